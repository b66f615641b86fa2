"""Stage 5: classify tiles block by block as Dask tasks and write COG maps.

Each block task reads only its window of every composite layer, builds features with the same
code as training, predicts the category, then the subcategory of pixels whose category has a
subcategory model, and the confidence. Finished blocks are kept in the store (resumable); the
maps are assembled from them, written as COGs with colour tables and class names to the
`classification-maps` bucket, and catalogued.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from distributed import as_completed
from rasterio.enums import Resampling
from rasterio.windows import Window

from landcoverpy import __version__, records, styles
from landcoverpy.assets import ids, integrity, keys, lookup, publish
from landcoverpy.assets.params import CompositeParams
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import RUN_STOPPERS, LandcoverError, ModelError
from landcoverpy.features import FeatureReader, feature_names, pixels_to_matrix, tile_grid
from landcoverpy.inputs import NOT_CLASSIFIED_VALUE, Season
from landcoverpy.models.hierarchical import predict_layers
from landcoverpy.pipeline.tasks import dask_task, releases_workers, task_key
from landcoverpy.progress import step
from landcoverpy.raster.cleaning import clean
from landcoverpy.raster.cog import CogWriter
from landcoverpy.raster.grid import Grid, block_windows, window_id
from landcoverpy.records import FeatureSource, HierarchyRecord
from landcoverpy.report_html import unmapped_text
from landcoverpy.reports import class_colours, confidence_png, quicklook_png
from landcoverpy.scratch import scratch_dir
from landcoverpy.storage import ObjectStore, open_store

log = logging.getLogger(__name__)

CLASS_OUTPUTS = ("classification", "sl_classification")
SCORE_OUTPUTS = ("confidence", "sl_confidence", "uncertainty")
NODATA = {"uncertainty": 255, "probabilities": 255}  # 0 is a valid value there; elsewhere 0 = nodata


def outputs_of(probabilities: bool) -> tuple[str, ...]:
    return CLASS_OUTPUTS + SCORE_OUTPUTS + (("probabilities",) if probabilities else ())


@dataclass
class LoadedHierarchy:
    """Everything a block task needs, shipped once to each worker."""

    hierarchy_id: str
    features: list[str]
    category_model: Any
    category_values: list[int]
    subcategory_models: dict[int, tuple[Any, list[int]]]
    direct: dict[int, int]
    lc_labels: dict[str, int]
    sl_labels: dict[str, int]
    probabilities: bool = False  # also a per-category probability COG
    cleaning: int = 0  # majority filter window of the category map (0 = none)

    @property
    def outputs(self) -> tuple[str, ...]:
        return outputs_of(self.probabilities)

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return predict_layers(
            self.category_model, self.category_values, self.subcategory_models, self.direct, X, self.probabilities
        )


def load_hierarchy(
    ctx: Context, record: HierarchyRecord, probabilities: bool = False, cleaning: int = 0
) -> LoadedHierarchy:
    cat_est, cat_rec = lookup.load_estimator(ctx, record.category_model)
    subs = {}
    for value, rid in record.subcategory_models.items():
        est, rec = lookup.load_estimator(ctx, rid)
        subs[int(value)] = (est, rec.label_values)
    return LoadedHierarchy(
        hierarchy_id=record.id,
        features=record.features,
        category_model=cat_est,
        category_values=cat_rec.label_values,
        subcategory_models=subs,
        direct={int(k): int(v) for k, v in record.direct.items()},
        lc_labels=record.lc_labels,
        sl_labels=record.sl_labels,
        probabilities=probabilities,
        cleaning=cleaning,
    )


@dataclass(frozen=True)
class BlockResult:
    """A classified block: the key of its category layer, and whether it was already done."""

    key: str
    reused: bool


@dataclass(frozen=True)
class LayerResult:
    """An assembled map layer: its objects (the COG and companions) and, for class layers, the
    pixel count of each value."""

    output: dict[str, Any]
    counts: dict[int, int]


@dask_task
def classify_block(
    settings: Settings,
    composites: dict[str, FeatureSource],
    model: LoadedHierarchy,
    window: Window,
    blocks_prefix: str,
) -> BlockResult:
    """Dask task: predict one block and keep each of its layers in the store (one object per
    layer, the category layer written last, so a block is done when every layer is there). A
    block already done is reused."""
    store = open_store(settings, check=False)
    bucket = settings.MINIO_BUCKET_CLASSIFICATIONS
    names = sorted(model.outputs, key=lambda n: n == "classification")  # the category layer last
    layer_keys = {name: keys.block_key(blocks_prefix, name, window_id(window)) for name in names}
    if all(store.exists(bucket, k) for k in layer_keys.values()):
        return BlockResult(layer_keys["classification"], reused=True)
    halo = model.cleaning // 2  # the cleaning filter sees this far: predict a margin around the block
    grown = Window(window.col_off - halo, window.row_off - halo, window.width + 2 * halo, window.height + 2 * halo)
    with FeatureReader(store, composites, model.features) as reader:
        block = reader.read(grown)
    X, valid = pixels_to_matrix(block)
    layers = model.predict(X)
    out = {}
    for name in model.outputs:
        if name == "probabilities":
            arr = np.full((len(model.category_values), *valid.shape), NODATA[name], dtype="uint8")
            arr[:, valid] = layers[name].T
        else:
            arr = np.full(valid.shape, NODATA.get(name, 0), dtype="uint8")
            arr[valid] = layers[name]
        out[name] = arr
    if model.cleaning:
        out["classification"], out["sl_classification"] = clean(
            out["classification"], out["sl_classification"], model.cleaning
        )
    if halo:
        core = (slice(halo, halo + int(window.height)), slice(halo, halo + int(window.width)))
        out = {name: arr[(slice(None), *core)] if arr.ndim == 3 else arr[core] for name, arr in out.items()}
    for name in names:
        buf = io.BytesIO()
        np.savez_compressed(buf, **{name: out[name]})  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        buf.seek(0)
        store.put_stream(bucket, layer_keys[name], buf)
    return BlockResult(layer_keys["classification"], reused=False)


def colour_table(values: dict[str, int]) -> tuple[dict[int, tuple[int, int, int, int]], dict[int, str]]:
    colours = class_colours(values)
    names = {v: k for k, v in values.items()}
    table = {0: (0, 0, 0, 0)}
    table |= {v: (*rgb, 255) for v, rgb in colours.items()}
    return table, names


@dataclass
class TileResult:
    tile: str
    record: records.MapRecord | None = None
    reused: bool = False
    skipped: str | None = None


@dataclass
class ClassifyReport:
    tiles: list[TileResult] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for t in self.tiles:
            if t.skipped:
                out.append(f"{t.tile}: skipped ({t.skipped})")
            elif t.record:
                counts = t.record.pixel_counts["classification"]
                state = "reused" if t.reused else "classified"
                line = f"{t.tile}: {state}; pixels per category: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                nodata = int(t.record.nodata_pixels or 0)
                if nodata:
                    line += "; " + unmapped_text(nodata, nodata + sum(counts.values()))
                out.append(line)
        return out


def check_features(model_features: list[str], available: list[str], tile: str) -> None:
    missing = [f for f in model_features if f not in available]
    if missing:
        raise ModelError(
            f"tile {tile}: the model needs feature column(s) its composites lack: {', '.join(missing[:12])}"
            + (f" (+{len(missing) - 12} more)" if len(missing) > 12 else "")
            + ". Re-run composite with the seasons/layers the model was trained on, or retrain."
        )


def classify_tile(
    ctx: Context,
    tile: str,
    seasons: list[Season],
    model: LoadedHierarchy,
    model_future: Any,
    client: Any,
    block_size: int,
    params: CompositeParams,
    progress: bool = True,
) -> TileResult:

    found = lookup.feature_sources(ctx, tile, seasons, params, with_dem=lookup.model_uses_dem(model.features))
    if not found.complete:
        why = "missing " + ", ".join(found.missing)
        log.warning("tile %s: %s under the model's composite settings: skipped", tile, why)
        return TileResult(tile, skipped=why)
    comps = found.sources
    check_features(model.features, feature_names(comps), tile)
    mid = ids.map_id(
        model.hierarchy_id, tile, found.ids, {"probabilities": model.probabilities, "cleaning": model.cleaning}
    )
    existing = records.load(ctx.catalog, records.MapRecord, mid)
    if existing is not None and integrity.reusable(ctx, existing):
        record = mark_used(ctx, existing)
        publish_latest(ctx, record)
        return TileResult(tile, record, reused=True)
    grid = tile_grid(comps)
    blocks_prefix = keys.blocks_prefix(mid)
    windows = list(block_windows(grid.height, grid.width, block_size))
    futures = [
        client.submit(
            classify_block,
            ctx.settings,
            comps,
            model_future,
            w,
            blocks_prefix,
            key=task_key(f"block-{mid}-{window_id(w)}"),
            pure=False,
        )
        for w in windows
    ]
    reused = 0
    with step(log, f"classify {tile}", len(futures), "block", progress) as bar:
        for fut in as_completed(futures):
            reused += fut.result().reused
            bar.update(1)
    if reused:
        log.info("tile %s: %d of %d blocks were already done (resumed)", tile, reused, len(windows))
    assembled = assemble_maps(ctx, tile, mid, grid, windows, blocks_prefix, model, comps, params, client, progress)
    record = records.store(ctx.catalog, assembled)  # objects first, then the record
    publish_latest(ctx, record)
    ctx.check_lease()  # blocks are removed only by the run holding the lease
    ctx.store.delete_prefix(ctx.settings.MINIO_BUCKET_CLASSIFICATIONS, blocks_prefix + "/")
    return TileResult(tile, record)


def mark_used(ctx: Context, record: records.MapRecord) -> records.MapRecord:
    """Note that a run used this map now (pruning keeps the most recently used maps)."""
    record = record.model_copy(update={"last_used": publish.now_iso()})
    records.save(ctx.catalog, record)
    return record


def publish_latest(ctx: Context, record: records.MapRecord) -> None:
    """Point ``latest/{tile}/...`` at this complete, catalogued map (copies, replaced whole)."""
    pairs = []
    for name, loc in record.outputs.items():
        pairs.append((loc.key, keys.map_alias_key(record.tile, name)))
        for c in loc.companions():
            pairs.append((c.key, keys.map_alias_key(record.tile, name, c.suffix)))
    bucket = next(iter(record.outputs.values())).bucket
    publish.publish_alias(
        ctx,
        bucket,
        pairs,
        keys.map_alias_key(record.tile, "map", ".json"),
        {
            "map_id": record.id,
            "hierarchy": record.hierarchy,
            "tile": record.tile,
            "sources": record.composites,
            "created": record.created,
            "published": publish.now_iso(),
            "objects": {n: loc.key for n, loc in record.outputs.items()},
        },
    )


@dataclass(frozen=True)
class LayerSpec:
    """How one layer of a map is written: file name, colours and class names (class layers),
    band descriptions and units, overview resampling."""

    file: str
    description: str
    resampling: str
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    names: dict[int, str] = field(default_factory=dict)
    units: str | None = None
    bands: list[str] | None = None

    @property
    def band_descriptions(self) -> list[str]:
        return self.bands or [self.description]


def _map_specs(tile: str, model: LoadedHierarchy) -> dict[str, LayerSpec]:
    cleaned = f", majority filter {model.cleaning}x{model.cleaning}" if model.cleaning else ""
    lc_table, lc_names = colour_table(model.lc_labels)
    sl_values = dict(model.sl_labels) | {"not classified": NOT_CLASSIFIED_VALUE}
    sl_table, sl_names = colour_table(sl_values)
    specs = {
        "classification": LayerSpec(
            "classification.tif", "category (0 = nodata)" + cleaned, "mode", lc_table, lc_names
        ),
        "sl_classification": LayerSpec(
            "sl_classification.tif", "subcategory (0 = nodata, 1 = not classified)", "mode", sl_table, sl_names
        ),
        "confidence": LayerSpec("confidence.tif", "probability of the chosen category (%)", "average", units="%"),
        "sl_confidence": LayerSpec(
            "sl_confidence.tif",
            "probability of the chosen subcategory (%; 0 = nodata or not classified)",
            "average",
            units="%",
        ),
        "uncertainty": LayerSpec(
            "uncertainty.tif",
            "category uncertainty: 100 x (1 - margin between the two most probable categories); 255 = nodata",
            "average",
            units="%",
        ),
    }
    if model.probabilities:
        specs["probabilities"] = LayerSpec(
            "probabilities.tif",
            "probability of each category (%); 255 = nodata",
            "average",
            units="%",
            bands=[f"probability of {n} (%)" for n in model_class_names(model)],
        )
    return specs


def model_class_names(model: LoadedHierarchy) -> list[str]:
    names = {v: n for n, v in model.lc_labels.items()}
    return [names.get(v, str(v)) for v in model.category_values]


def write_styles(store: ObjectStore, bucket: str, tile: str, mid: str, name: str, spec: LayerSpec) -> dict[str, str]:
    """QGIS style (``{name}.qml``, the layer's default style) and GDAL category names
    (``{name}.tif.aux.xml``) beside a map; returns their keys."""
    out = {}
    if spec.colormap:
        classes = {v: (spec.names.get(v, str(v)), rgba[:3]) for v, rgba in spec.colormap.items() if v}
        qml = styles.paletted_qml(classes)
        aux_key = keys.map_key(tile, mid, name, ".tif.aux.xml")
        store.put_bytes(bucket, aux_key, styles.category_aux_xml({0: "nodata"} | spec.names).encode("utf-8"))
        out["aux"] = aux_key
    else:
        qml = styles.graduated_qml(0, 100, "%")
    out["style"] = keys.map_key(tile, mid, name, ".qml")
    store.put_bytes(bucket, out["style"], qml.encode("utf-8"))
    return out


def assemble_maps(
    ctx: Context,
    tile: str,
    mid: str,
    grid: Grid,
    windows: list[Window],
    blocks_prefix: str,
    model: LoadedHierarchy,
    comps: dict[str, FeatureSource],
    params: CompositeParams,
    client: Any,
    progress: bool = False,
) -> records.MapRecord:
    """Every layer of the map assembled from the stored blocks as its own Dask task (the layers
    are independent: each worker writes and compresses a whole COG, so a cluster makes several
    at once), then the map's record."""

    specs = _map_specs(tile, model)
    tags = {
        "tile": tile,
        "map_id": mid,
        "model": model.hierarchy_id,
        "composites": ",".join(c.id for c in comps.values()),
    }
    futures = {
        client.submit(
            assemble_layer,
            ctx.settings,
            tile,
            mid,
            grid,
            windows,
            blocks_prefix,
            name,
            spec,
            tags,
            key=task_key(f"assemble-{mid}-{name}"),
            pure=False,
        ): name
        for name, spec in specs.items()
    }
    outputs: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[int, int]] = {}
    with step(log, f"assemble {tile} maps", len(futures), "layer", progress) as bar:
        for fut in as_completed(list(futures)):
            name = futures[fut]
            got: LayerResult = fut.result()
            outputs[name], counts[name] = got.output, got.counts
            bar.update(1)
    outputs = {name: outputs[name] for name in specs}  # the layers' order, whatever order they finished in
    pixel_area_km2 = grid.resolution**2 / 1e6
    named_counts = {
        name: {specs[name].names.get(v, str(v)): c for v, c in sorted(counts[name].items()) if v}
        for name in CLASS_OUTPUTS
    }
    return records.MapRecord(
        id=mid,
        tile=tile,
        kind="classification",
        hierarchy=model.hierarchy_id,
        composites=[c.id for c in comps.values()],
        grid=grid.to_dict(),
        outputs=outputs,
        classes={
            "classification": {str(v): n for v, n in specs["classification"].names.items()},
            "sl_classification": {str(v): n for v, n in specs["sl_classification"].names.items()},
        },
        pixel_counts=named_counts,
        area_km2={k: round(v * pixel_area_km2, 4) for k, v in named_counts["classification"].items()},
        nodata_pixels=int(counts["classification"].get(0, 0)),
        composite_params=params.to_dict(),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        code_version=__version__,
    )


@dask_task
def assemble_layer(
    settings: Settings,
    tile: str,
    mid: str,
    grid: Grid,
    windows: list[Window],
    blocks_prefix: str,
    name: str,
    spec: LayerSpec,
    tags: dict[str, str],
) -> LayerResult:
    """Dask task: one layer of a map from the stored blocks, as a COG with its quicklook, QGIS
    style and category names, uploaded to its id-addressed keys. Returns the layer's location and,
    for class layers, the pixel count of each value."""
    store = open_store(settings, check=False)
    bucket = settings.MINIO_BUCKET_CLASSIFICATIONS
    bands = spec.band_descriptions
    counts: dict[int, int] = {}
    with scratch_dir(settings.TMP_DIR) as tmp:
        path = Path(tmp) / spec.file
        layer_tags = (
            tags
            | {"classes": json.dumps({str(k): v for k, v in spec.names.items()}, ensure_ascii=False)}
            | {f"class_{v}": n for v, n in spec.names.items()}
        )
        # a failure closes the writer without making a COG
        with CogWriter(
            path,
            grid,
            "uint8",
            count=len(bands),
            nodata=NODATA.get(name, 0),
            descriptions=bands,
            colormap=spec.colormap,
            tags=layer_tags,
            overview_resampling=spec.resampling,
            tmp_dir=tmp,
            units=[spec.units] * len(bands) if spec.units else None,
        ) as writer:
            for window in windows:
                with store.open(bucket, keys.block_key(blocks_prefix, name, window_id(window))) as fh:
                    arr = np.load(io.BytesIO(fh.read()))[name]
                writer.write(arr, window)
                if name in CLASS_OUTPUTS:
                    vals, cnt = np.unique(arr, return_counts=True)
                    for v, c in zip(vals.tolist(), cnt.tolist()):
                        counts[v] = counts.get(v, 0) + c
        out = publish.put_file(store, bucket, keys.map_key(tile, mid, name), path)
        out |= {"nodata": NODATA.get(name, 0), "count": len(bands)}
        if name != "probabilities":
            qkey = keys.map_key(tile, mid, name, ".png")
            store.put_bytes(bucket, qkey, _quicklook(path, name, spec, tile))
            out["quicklook"] = qkey
        out |= write_styles(store, bucket, tile, mid, name, spec)
    return LayerResult(out, counts)


def _quicklook(path: Path, name: str, spec: LayerSpec, tile: str) -> bytes:
    with rasterio.open(path) as src:
        scale = max(1, int(np.ceil(max(src.width, src.height) / 1200)))
        out_shape = (max(1, src.height // scale), max(1, src.width // scale))
        values = src.read(1, out_shape=out_shape, resampling=Resampling.nearest)
    if name in SCORE_OUTPUTS:
        return confidence_png(
            values, f"{tile} {name.replace('_', ' ')}", f"{name.replace('_', ' ')} (%)", nodata=NODATA.get(name, 0)
        )
    colours = {v: rgba[:3] for v, rgba in (spec.colormap or {}).items() if v}
    return quicklook_png(values, colours, spec.names, f"{tile} {name.replace('_', ' ')}")


def model_composite_params(ctx: Context, hierarchy: HierarchyRecord) -> CompositeParams:
    """The composite parameters the model was trained on (one mask definition for training and
    prediction); the settings' for records that predate them."""
    recorded = hierarchy.composite_params
    if recorded:
        current = CompositeParams.from_settings(ctx.settings)
        return replace(CompositeParams.from_dict(recorded), window_size=current.window_size, threads=current.threads)
    return CompositeParams.from_settings(ctx.settings)


@releases_workers
def classify(
    ctx: Context,
    tiles: list[str],
    seasons: list[Season],
    hierarchy: HierarchyRecord,
    client: Any,
    block_size: int | None = None,
    progress: bool = True,
    probabilities: bool | None = None,
    cleaning: int | None = None,
) -> ClassifyReport:
    """Classify ``tiles`` with ``hierarchy`` from the composites made as its training composites
    were (same mask and layer parameters); a map already made for the same model and sources is
    reused and republished as ``latest``."""
    block_size = block_size or ctx.settings.CLASSIFICATION_BLOCK_SIZE
    params = model_composite_params(ctx, hierarchy)
    model = load_hierarchy(
        ctx,
        hierarchy,
        ctx.settings.OUTPUT_PROBABILITIES if probabilities is None else probabilities,
        ctx.settings.CLEANING_WINDOW if cleaning is None else cleaning,
    )
    model_future = client.scatter(model, broadcast=True, hash=False)
    report = ClassifyReport()
    for tile in tiles:
        try:
            report.tiles.append(
                classify_tile(ctx, tile, seasons, model, model_future, client, block_size, params, progress)
            )
        except ModelError:
            raise
        except RUN_STOPPERS:  # an outage past OUTAGE_TOLERANCE, a full disk: no other tile can pass
            raise
        except LandcoverError as exc:
            log.error("tile %s: %s", tile, exc)
            report.tiles.append(TileResult(tile, skipped=str(exc)))
    for line in report.lines():
        log.info(line)
    return report
