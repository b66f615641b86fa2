"""MODIS abundance estimation, the dataset/train/predict stages: build the per-pixel dataset from
rasters, train a level, and write abundance maps (COGs) block by block. Datasets and models are
stored and loaded by the asset layer (``assets.abundance``); series are read by
``raster.series``.

Inputs are rasters, so any source works: the time series is a list of dated multi-band rasters on
the coarse grid (e.g. MOD09A1 composites with bands 1-7, missing values as nodata/NaN, QA already
applied by the reader), ancillary variables are single-band rasters on any grid (reprojected to
the coarse grid by averaging), and the labels come from a fine land-cover map (a reference raster,
or our own classification_{tile}.tif / sl_classification_{tile}.tif) whose class fractions inside
each coarse pixel are computed by area-weighted averaging.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from distributed import as_completed
from pyogrio.raw import read as ogr_read
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject, transform_geom
from rasterio.windows import Window

from landcoverpy import __version__, records, styles
from landcoverpy.assets import ids, keys, publish
from landcoverpy.assets.abundance import (
    load_dataset,
    load_model,
    model_id_for,
    save_model,
)
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError, ModelError
from landcoverpy.models.abundance import (
    NETWORK_KINDS,
    AbundanceData,
    AbundanceModel,
    TrainParams,
    train_abundance,
)
from landcoverpy.pipeline.tasks import dask_task, task_threads
from landcoverpy.progress import step
from landcoverpy.raster.ancillary import ancillary_layers
from landcoverpy.raster.cog import CogWriter
from landcoverpy.raster.grid import Grid, block_windows
from landcoverpy.raster.series import SeriesItem, aggregate_series, load_series_manifest
from landcoverpy.records import AbundanceDatasetRecord, AbundanceModelRecord, LoadedAbundanceModel, MapRecord
from landcoverpy.reports import class_colours, quicklook_png
from landcoverpy.scratch import scratch_dir
from landcoverpy.storage import join_key, open_store
from landcoverpy.timesteps import check_same_steps, parse_step, step_of_record

log = logging.getLogger(__name__)

LEVELS = ("N1", "N2")


VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".kml", ".kmz", ".fgb")


def polygon_fractions(
    path: str, field: str, classes: dict[str, int], grid: Grid, window: Window | None = None, oversample: int = 10
) -> np.ndarray:
    """(pixels, K) class fractions from reference polygons: the polygons are rasterised at
    ``oversample`` x ``oversample`` sub-pixels per coarse pixel and counted. ``field`` holds the
    class name or value of each polygon."""

    win = window or Window(0, 0, grid.width, grid.height)
    try:
        meta, _, geometry, fields = ogr_read(path)
    except Exception as exc:
        raise InputValidationError(f"{path}: cannot read the reference polygons ({exc})") from None
    if field not in meta["fields"]:
        raise InputValidationError(f"{path}: no attribute {field!r}; it has {', '.join(meta['fields'])}")
    column = fields[list(meta["fields"]).index(field)]
    by_name = {str(k): v for k, v in classes.items()} | {str(v): v for v in classes.values()}
    shapes = []
    for geom, label in zip(shapely.from_wkb(geometry), column):
        value = by_name.get(str(label).removesuffix(".0"))
        if geom is None or value is None:
            continue
        mapping = shapely.geometry.mapping(geom)
        if meta.get("crs") and meta["crs"] != grid.crs:
            mapping = transform_geom(meta["crs"], grid.crs, mapping)
        shapes.append((mapping, value))
    h, w = int(win.height) * oversample, int(win.width) * oversample

    transform = grid.window_transform(win) @ Affine.scale(1 / oversample)
    fine = (
        rasterize(shapes, out_shape=(h, w), transform=transform, fill=0, dtype="int32")
        if shapes
        else np.zeros((h, w), "int32")
    )
    blocks = fine.reshape(int(win.height), oversample, int(win.width), oversample)
    counts = np.stack([(blocks == v).sum(axis=(1, 3)).ravel() for v in classes.values()], axis=1).astype("float32")
    sums = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, counts / sums, np.nan).astype("float32")


def class_fractions(
    fine_map: str, classes: dict[str, int], grid: Grid, window: Window | None = None, field: str | None = None
) -> np.ndarray:
    """(pixels, K) area fraction of each class value of the fine map inside each coarse pixel,
    over the fine pixels that carry a class (nodata and unknown values are left out). A vector
    file (polygons) is rasterised first, with ``field`` as the class attribute."""
    if str(fine_map).lower().endswith(VECTOR_SUFFIXES):
        if not field:
            raise InputValidationError(
                f"{fine_map}: polygons need the attribute holding the class (--n1-field/--n2-field)"
            )
        return polygon_fractions(fine_map, field, classes, grid, window)
    win = window or Window(0, 0, grid.width, grid.height)
    with rasterio.open(fine_map) as src:
        fine = src.read(1)
        parts = []
        for value in classes.values():
            dst = np.full((int(win.height), int(win.width)), np.nan, "float32")
            reproject(
                (fine == value).astype("float32"),
                dst,
                src_transform=src.transform,
                src_crs=src.crs,
                dst_transform=grid.window_transform(win),
                dst_crs=grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling.average,
            )
            parts.append(dst.ravel())
    frac = np.stack(parts, axis=1)
    sums = frac.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, frac / sums, np.nan).astype("float32")


def confidence_beside(fine_map: str) -> str | None:
    """The confidence raster exported beside one of the project's maps: ``classification_T.tif``
    -> ``confidence_T.tif``, ``sl_classification_T.tif`` -> ``sl_confidence_T.tif``; None when
    the map is not ours or the file is absent."""
    path = Path(fine_map)
    for prefix, conf in (("sl_classification_", "sl_confidence_"), ("classification_", "confidence_")):
        if path.name.startswith(prefix):
            sibling = path.with_name(conf + path.name[len(prefix) :])
            return str(sibling) if sibling.exists() else None
    return None


def mean_confidence(confidence: str, grid: Grid, window: Window | None = None) -> np.ndarray:
    """(pixels,) mean confidence (0-1) of the fine map's pixels inside each coarse pixel, from the
    project's confidence raster (percent; its nodata left out)."""
    win = window or Window(0, 0, grid.width, grid.height)
    out = np.full((int(win.height), int(win.width)), np.nan, "float32")
    with rasterio.open(confidence) as src:
        nodata = src.nodata if src.nodata is not None else 0
        values = src.read(1).astype("float32")
        values[values == nodata] = np.nan
        reproject(
            values,
            out,
            src_transform=src.transform,
            src_crs=src.crs,
            src_nodata=np.nan,
            dst_transform=grid.window_transform(win),
            dst_crs=grid.crs,
            dst_nodata=np.nan,
            resampling=Resampling.average,
        )
    return np.clip(out.ravel() / 100.0, 0, 1)


def derive_parents(
    n1: np.ndarray,
    n1_classes: list[str],
    n2: np.ndarray,
    n2_classes: list[str],
    given: dict[str, str] | None = None,
    source: str = "--n2-parents",
) -> dict[str, str]:
    """The N1 parent of each N2 class: ``given`` ({N2 name: N1 name}) where it names one, else the
    N1 class its area overlaps most (from the fractions of both levels over the same pixels). A
    class split between parents is logged; N2 classes absent from the area get no parent."""
    given = dict(given or {})
    bad = [f"{c!r} -> {p!r}" for c, p in given.items() if c not in n2_classes or p not in n1_classes]
    if bad:
        raise InputValidationError(
            f"{source}: {', '.join(bad)}: every key must be an N2 class "
            f"({', '.join(n2_classes)}) and every value an N1 class ({', '.join(n1_classes)})"
        )
    ok = np.isfinite(n1).all(axis=1) & np.isfinite(n2).all(axis=1)
    overlap = n1[ok].T.astype("float64") @ n2[ok].astype("float64")  # (K1, K2) shared area
    out = {}
    for j, name in enumerate(n2_classes):
        if name in given:
            out[name] = given[name]
            continue
        total = overlap[:, j].sum()
        if total <= 0:
            log.info("N2 class %s does not occur in the area: no parent derived", name)
            continue
        i = int(overlap[:, j].argmax())
        out[name] = n1_classes[i]
        if overlap[i, j] / total < 0.9:
            log.warning(
                "N2 class %s lies %.0f%% inside N1 class %s (its parent) and the rest elsewhere; give "
                "%s to set parents explicitly",
                name,
                100 * overlap[i, j] / total,
                n1_classes[i],
                source,
            )
    return out


def build_abundance_dataset(
    ctx: Context,
    manifest: str | Path,
    fine_maps: dict[str, tuple[Any, ...]],
    ancillary: dict[str, str],
    year: int,
    step: Any = None,
    block_km: float = 5.0,
    parents: dict[str, str] | None = None,
    confidence: dict[str, str | None] | None = None,
) -> AbundanceDatasetRecord:
    """Per coarse pixel: time series (steps x bands), ancillary values and class fractions for
    each level (``fine_maps``: level -> (map path, class name -> value[, polygon attribute])). Stored as Parquet in the
    datasets bucket and catalogued under ``kind = abundance``. ``step``: a
    :class:`~landcoverpy.timesteps.StepSpec` (default MOD09A1's 8-day steps, 46 a year). With
    both levels, the parent of each N2 class is recorded (``parents``, or derived).
    ``confidence`` (level -> confidence raster, or None for none): each coarse pixel's label
    weight is the mean confidence of the fine map inside it; by default the confidence raster
    exported beside one of the project's own maps is used when there is one."""

    step = step if step is not None else parse_step(None)
    items = load_series_manifest(manifest)
    with ctx.store.rasterio_env():
        with rasterio.open(items[0].path) as ref:
            grid = Grid.from_dataset(ref)
            band_names = [d or f"b{i + 1}" for i, d in enumerate(ref.descriptions)]
        steps = step.bins(year)
        series = aggregate_series(items, grid, steps)
        anc, anc_names = ancillary_layers(ancillary, grid)
    frame = pd.DataFrame(
        {f"t{t:02d}_{b}": series[:, t, i] for t in range(len(steps)) for i, b in enumerate(band_names)}
    )
    for i, name in enumerate(anc_names):
        frame[f"anc_{name}"] = anc[:, i]
    levels, fracs, weights = {}, {}, {}
    for level, spec in fine_maps.items():
        path, classes = spec[0], spec[1]
        frac = class_fractions(path, classes, grid, field=spec[2] if len(spec) > 2 else None)
        for k, name in enumerate(classes):
            frame[f"{level}__{name}"] = frac[:, k]
        levels[level] = list(classes)
        fracs[level] = frac
        if confidence is not None and level in confidence:
            conf = confidence[level]  # given, or None: no weights for this level
        else:
            conf = None if str(path).lower().endswith(VECTOR_SUFFIXES) else confidence_beside(str(path))
        if conf:
            frame[f"weight__{level}"] = mean_confidence(conf, grid)
            weights[level] = conf
    hierarchy = (
        derive_parents(fracs["N1"], levels["N1"], fracs["N2"], levels["N2"], parents)
        if "N1" in fracs and "N2" in fracs
        else None
    )
    rr, cc = np.mgrid[0 : grid.height, 0 : grid.width]
    frame["row"], frame["col"] = rr.ravel(), cc.ravel()
    xs, ys = grid.affine @ (cc.ravel() + 0.5, rr.ravel() + 0.5)
    size = block_km * 1000
    frame["block"] = np.floor(np.asarray(xs) / size).astype(np.int64) * 1_000_003 + np.floor(
        np.asarray(ys) / size
    ).astype(np.int64)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    did = ids.abundance_dataset_id(year, digest)
    key = keys.abundance_dataset_key(did)
    ctx.store.put_bytes(ctx.settings.MINIO_BUCKET_DATASETS, key, buf.getvalue())
    record = AbundanceDatasetRecord(
        id=did,
        kind="abundance",
        bucket=ctx.settings.MINIO_BUCKET_DATASETS,
        key=key,
        year=year,
        step=step.name,
        steps=[[s.isoformat(), e.isoformat()] for s, e in steps],
        bands=band_names,
        parents=hierarchy,
        label_weights=weights,
        ancillary=anc_names,
        ancillary_sources=ancillary,
        levels=levels,
        grid=grid.to_dict(),
        manifest=str(manifest),
        series_items=len(items),
        pixels=int(len(frame)),
        missing_fraction=float(np.isnan(series).mean()),
        table_sha256=digest,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        code_version=__version__,
    )
    stored = records.store(ctx.catalog, record)
    log.info(
        "abundance dataset %s: %d pixels, %d steps (%s) x %d bands, %.0f%% missing",
        did,
        len(frame),
        len(steps),
        step.describe(),
        len(band_names),
        100 * (stored.missing_fraction or 0.0),
    )
    return stored


def step_times(record: AbundanceDatasetRecord) -> np.ndarray:
    """Time of each step from the first step's start, in units of the typical step (so a gap of
    one step is ~1 whatever the step length; months of 28-31 days and the short last 8-day step
    of a year count exactly)."""
    starts = [dt.date.fromisoformat(a) for a, _ in record.steps]
    days = np.array([(d - starts[0]).days for d in starts], dtype="float32")
    unit = float(np.median(np.diff(days))) if len(days) > 1 else 1.0
    return days / max(unit, 1.0)


def dataset_arrays(frame: pd.DataFrame, record: AbundanceDatasetRecord, level: str) -> AbundanceData:
    """The arrays of one level, or of both (``level`` ``both``: N1 fractions, N2 fractions and
    the parent of each N2 class, for one consistent model)."""
    levels = record.levels
    wanted = ["N1", "N2"] if level == "both" else [level]
    for lv in wanted:
        if lv not in levels:
            raise InputValidationError(
                f"the abundance dataset {record.id} has no level {lv}; it has "
                f"{', '.join(levels)}" + (" (give --n2-map when building it)" if lv == "N2" else "")
            )
    steps, bands = len(record.steps), record.bands
    series = (
        frame[[f"t{t:02d}_{b}" for t in range(steps) for b in bands]].to_numpy("float32").reshape(-1, steps, len(bands))
    )
    anc = frame[[f"anc_{a}" for a in record.ancillary]].to_numpy("float32")
    classes = levels[wanted[0]]
    frac = frame[[f"{wanted[0]}__{c}" for c in classes]].to_numpy("float32")
    labelled = np.isfinite(frac).all(axis=1)
    times = step_times(record) if record.step else np.arange(steps, dtype="float32")
    data = AbundanceData(
        series[labelled], anc[labelled], frac[labelled], frame["block"].to_numpy()[labelled], classes, times
    )
    if f"weight__{wanted[0]}" in frame:
        w = frame[f"weight__{wanted[0]}"].to_numpy("float32")[labelled]
        data.weights = np.where(np.isfinite(w), w, 0.0).astype("float32")
        log.info(
            "label weights: the mean confidence of the fine %s map inside each pixel (mean %.2f)",
            wanted[0],
            float(data.weights.mean()),
        )
    if level == "both":
        parents = record.parents or {}
        sub = [c for c in levels["N2"] if c in parents]
        left = [c for c in levels["N2"] if c not in parents]
        if left:
            log.warning(
                "N2 class(es) %s have no parent (absent from the area): left out of the model of both levels",
                ", ".join(left),
            )
        if not sub:
            raise InputValidationError(
                f"the abundance dataset {record.id}: no N2 class has an N1 parent; give --n2-parents when building it"
            )
        n2 = frame[[f"N2__{c}" for c in sub]].to_numpy("float32")[labelled]
        with np.errstate(invalid="ignore"):
            n2 = np.where(np.nansum(n2, axis=1, keepdims=True) > 0, n2, np.nan)
        data.sub_fractions = n2
        data.sub_classes = sub
        data.parents = [classes.index(parents[c]) for c in sub]
    return data


def train_level(
    ctx: Context,
    level: str,
    params: TrainParams,
    dataset_id: str | None = None,
    base_model: str | None = None,
    progress: bool = True,
) -> tuple[AbundanceModelRecord, dict[str, Any]]:
    """Train (or reuse) the model of ``level`` (N1, N2, or ``both``: one model whose N2
    fractions add up to its N1 fractions) on an abundance dataset."""
    frame, record = load_dataset(ctx, dataset_id)
    mid = model_id_for(level, record, params, base_model)
    existing = records.load(ctx.catalog, AbundanceModelRecord, mid)
    if existing is not None:
        log.info("abundance model %s already trained on %s with these settings, reused", mid, record.id)
        return existing, ctx.store.get_json(existing.bucket, join_key(existing.prefix, "metrics.json"))
    data = dataset_arrays(frame, record, level)
    base = None
    if base_model:
        base, brec = load_model(ctx, level, base_model)
        check_same_steps(
            brec.steps, brec.step, base_model, record.steps, step_of_record(record.to_doc()), f"dataset {record.id}"
        )
    model, metrics = train_abundance(
        data,
        params,
        feature_names=record.bands,
        ancillary_names=record.ancillary,
        base=base,
        progress=progress,
        step=step_of_record(record.to_doc()),
    )
    return save_model(ctx, model, level, record, base_model, params), metrics


def predict_area(
    ctx: Context,
    level: str,
    output_dir: Path,
    model_id: str | None = None,
    dataset_id: str | None = None,
    block: int = 512,
    client: Any = None,
    progress: bool = False,
    device: str | None = None,
) -> dict[str, Path]:
    """Abundance maps over the dataset's grid, block by block (Dask tasks when ``client``).
    ``level`` ``both`` writes the N1 and the N2 maps of a model of both levels. The dataset may
    be unlabelled (a new region: series and ancillaries only)."""
    model, mrec = load_model(ctx, level, model_id)
    _, drec = load_dataset(ctx, dataset_id)
    check_same_steps(mrec.steps, mrec.step, mrec.id, drec.steps, step_of_record(drec.to_doc()), f"dataset {drec.id}")
    levels = ["N1", "N2"] if level == "both" else [level]
    if level == "both" and model.sub_classes is None:
        raise ModelError(
            f"model {mrec.id} estimates one level ({mrec.model_level}); train one with "
            "`abundance train --level both` for consistent N1 and N2 maps"
        )
    for lv in levels:
        missing = [c for c in drec.levels.get(lv, []) if c not in model.level_classes(lv)]
        if missing and (lv == "N1" or model.sub_classes is None):  # N2 classes absent from training: no parent
            raise ModelError(
                f"level {lv} has classes unknown to model {mrec.id}: {', '.join(missing)}; "
                "fine-tune it on this legend (`landcoverpy abundance finetune`)"
            )
    if model.sub_classes is None and mrec.model_level != level:
        raise ModelError(f"model {mrec.id} was trained for level {mrec.model_level}, not {level}")
    if drec.ancillary != model.ancillary_names or drec.bands != model.feature_names:
        raise ModelError(
            f"dataset {drec.id} has inputs {drec.bands} + {drec.ancillary}; model {mrec.id} "
            f"was trained on {model.feature_names} + {model.ancillary_names}"
        )
    out: dict[str, Path] = {}
    todo = []
    for lv in levels:
        amid = ids.abundance_map_id(lv, mrec.id, drec.id)
        existing = records.load(ctx.catalog, MapRecord, amid)
        if existing is not None:
            log.info("abundance map %s already made by %s from %s, reused", amid, mrec.id, drec.id)
            out |= _suffixed(export_abundance(ctx, publish_abundance(ctx, existing), output_dir), lv, len(levels))
        else:
            todo.append((lv, amid))
    if todo:
        made = make_abundance_maps(ctx, todo, model, mrec, drec, block, client, progress, device)
        for (lv, _), record in zip(todo, made):
            out |= _suffixed(export_abundance(ctx, record, output_dir), lv, len(levels))
    return out


def _suffixed(paths: dict[str, Path], level: str, n_levels: int) -> dict[str, Path]:
    return paths if n_levels == 1 else {f"{k}_{level}": v for k, v in paths.items()}


def _gpu_workers(client: Any) -> bool:
    try:
        workers = client.scheduler_info().get("workers", {}).values()
    except Exception:  # noqa: BLE001 - a client without scheduler info: no resources
        return False
    return any((w.get("resources") or {}).get("GPU", 0) >= 1 for w in workers)


def make_abundance_maps(
    ctx: Context,
    todo: list[tuple[str, str]],
    model: AbundanceModel,
    mrec: LoadedAbundanceModel,
    drec: AbundanceDatasetRecord,
    block: int,
    client: Any,
    progress: bool = False,
    device: str | None = None,
) -> list[MapRecord]:
    """One prediction pass over the grid, then one map per level in ``todo`` ((level, map id))."""
    grid = Grid.from_dict(drec.grid)
    items = load_series_manifest(drec.manifest or "")
    steps = [(dt.date.fromisoformat(a), dt.date.fromisoformat(b)) for a, b in drec.steps]
    windows = list(block_windows(grid.height, grid.width, block))
    args = (ctx.settings, items, steps, drec.ancillary_sources, grid)
    label = "+".join(lv for lv, _ in todo)
    with step(log, f"abundance {label}: predicting", len(windows), "block", progress) as bar:
        if client is not None:
            resources = {"GPU": 1} if model.kind in NETWORK_KINDS and _gpu_workers(client) else None
            if resources:
                log.info("abundance: blocks go to the cluster's GPU workers")
            fut_model = client.scatter(model, broadcast=True, hash=False)
            futures = [
                client.submit(predict_block, *args, fut_model, w, device, pure=False, resources=resources)
                for w in windows
            ]
            for _ in as_completed(futures):
                bar.update(1)
            results = client.gather(futures)
        else:
            results = []
            for w in windows:
                results.append(predict_block(*args, model, w, device))
                bar.update(1)
    return [
        make_abundance_map(ctx, lv, model, mrec, drec, amid, windows, [r[:, model.level_columns(lv)] for r in results])
        for lv, amid in todo
    ]


def make_abundance_map(
    ctx: Context,
    level: str,
    model: AbundanceModel,
    mrec: LoadedAbundanceModel,
    drec: AbundanceDatasetRecord,
    amid: str,
    windows: list[Window],
    results: list[np.ndarray],
) -> MapRecord:
    classes = model.level_classes(level)
    grid = Grid.from_dict(drec.grid)
    k = len(classes)
    values = {name: i + 1 for i, name in enumerate(classes)}
    colours = class_colours(values)
    colormap = {0: (0, 0, 0, 0)} | {v: (*colours[v], 255) for v in values.values()}
    tags = {
        "model": mrec.id,
        "dataset": drec.id,
        "map_id": amid,
        "level": level,
        "classes": json.dumps(classes, ensure_ascii=False),
        "model_kind": model.kind,
    }
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    with scratch_dir(ctx.settings.TMP_DIR) as tmp:
        abundance_path, dominant_path = Path(tmp) / f"abundance_{level}.tif", Path(tmp) / f"dominant_{level}.tif"
        with (
            CogWriter(
                abundance_path,
                grid,
                "float32",
                count=k,
                nodata=float("nan"),
                descriptions=list(classes),
                tags=tags,
                overview_resampling="average",
                tmp_dir=tmp,
            ) as ab,
            CogWriter(
                dominant_path,
                grid,
                "uint8",
                nodata=0,
                descriptions=[f"dominant {level} class"],
                colormap=colormap,
                tags=tags | {f"class_{v}": n for n, v in values.items()},
                overview_resampling="mode",
                tmp_dir=tmp,
            ) as dom,
        ):
            for w, frac in zip(windows, results):
                cube = frac.T.reshape(k, int(w.height), int(w.width))
                ab.write(cube, w)
                dominant = np.where(
                    np.isnan(frac).any(axis=1), 0, np.nanargmax(np.nan_to_num(frac, nan=-1), axis=1) + 1
                )
                dom.write(dominant.reshape(int(w.height), int(w.width)).astype("uint8"), w)
        with rasterio.open(dominant_path) as src:
            dom_values = src.read(1)
        png = quicklook_png(dom_values, colours, {v: n for n, v in values.items()}, f"dominant {level} class")
        outputs = {
            "abundance": publish.put_file(
                ctx.store, bucket, keys.abundance_map_key(amid, abundance_path.name), abundance_path
            ),
            "dominant": publish.put_file(
                ctx.store, bucket, keys.abundance_map_key(amid, dominant_path.name), dominant_path
            ),
        }
    qkey = keys.abundance_map_key(amid, f"dominant_{level}.png")
    ctx.store.put_bytes(bucket, qkey, png)
    outputs["dominant"]["quicklook"] = qkey
    styles_out = {  # QGIS default styles and GDAL category names beside the maps
        "abundance": {"style": (f"abundance_{level}.qml", styles.graduated_qml(0, 1, ""))},
        "dominant": {
            "style": (f"dominant_{level}.qml", styles.paletted_qml({v: (n, colours[v]) for n, v in values.items()})),
            "aux": (
                f"dominant_{level}.tif.aux.xml",
                styles.category_aux_xml({0: "nodata"} | {v: n for n, v in values.items()}),
            ),
        },
    }
    for name, extras in styles_out.items():
        for what, (filename, text) in extras.items():
            key = keys.abundance_map_key(amid, filename)
            ctx.store.put_bytes(bucket, key, text.encode("utf-8"))
            outputs[name][what] = key
    record = MapRecord(
        id=amid,
        tile="abundance",
        kind=f"abundance-{level}",
        level=level,
        model=mrec.id,
        dataset=drec.id,
        grid=grid.to_dict(),
        classes=classes,
        outputs=outputs,
        created=publish.now_iso(),
        code_version=__version__,
    )
    return publish_abundance(ctx, records.store(ctx.catalog, record))


def publish_abundance(ctx: Context, record: MapRecord) -> MapRecord:
    """Mark the abundance map used now and point ``latest/abundance/{level}/`` at it."""
    record = record.model_copy(update={"last_used": publish.now_iso()})
    records.save(ctx.catalog, record)
    level = record.level or ""
    pairs = []
    for loc in record.outputs.values():
        for key in loc.object_keys():
            pairs.append((key, keys.abundance_alias_key(level, key.rsplit("/", 1)[-1])))
    bucket = next(iter(record.outputs.values())).bucket
    publish.publish_alias(
        ctx,
        bucket,
        pairs,
        keys.abundance_alias_key(level, "map.json"),
        {
            "map_id": record.id,
            "model": record.model,
            "dataset": record.dataset,
            "published": publish.now_iso(),
        },
    )
    return record


def export_abundance(ctx: Context, record: MapRecord, output_dir: Path) -> dict[str, Path]:
    """Copy the objects the catalog records for an abundance map into ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, loc in record.outputs.items():
        out[name] = ctx.store.get_file(loc.bucket, loc.key, output_dir / loc.key.rsplit("/", 1)[-1])
        if loc.quicklook:
            out["quicklook"] = ctx.store.get_file(
                loc.bucket, loc.quicklook, output_dir / f"dominant_{record.level}.png"
            )
        for extra, key in (("style", loc.style), ("aux", loc.aux)):
            if key:
                out[f"{name}_{extra}"] = ctx.store.get_file(loc.bucket, key, output_dir / key.rsplit("/", 1)[-1])
    return out


@dask_task
def predict_block(
    settings: Any,
    items: list[SeriesItem],
    steps: list[tuple[dt.date, dt.date]],
    ancillary: dict[str, str],
    grid: Grid,
    model: AbundanceModel,
    window: Window,
    device: str | None = None,
) -> np.ndarray:
    """(pixels of the window, K) fractions (every level the model estimates); NaN where the
    series is entirely missing."""

    threads = task_threads()
    if model.forest is not None and threads:  # the forest was saved with every core of training's machine
        model.forest.n_jobs = threads  # inside a worker: its own threads, as torch's
    with open_store(settings, check=False).rasterio_env():  # series may live in the store (s3://)
        series = aggregate_series(items, grid, steps, window)
        anc, _ = ancillary_layers(ancillary, grid, window)
    return model.predict(series, anc, device=device)
