"""What each command does, once: the sequences behind ``run`` and ``classify`` (stages, publishing,
export), shared by the command line (``cli.py`` parses and prints) and the Python API
(``api.py``). Each returns a typed outcome; nothing here prints."""

from __future__ import annotations

import functools
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landcoverpy import __version__, records
from landcoverpy.assets import ids, integrity, keys, lookup, publish
from landcoverpy.assets.map_values import sample_map
from landcoverpy.assets.params import CompositeParams, ModelParams
from landcoverpy.assets.stac import publish_catalog, write_catalog
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError, ModelError
from landcoverpy.inputs import Inputs, LabelledPoints, LabelSet, Season, load_points
from landcoverpy.models.area import AreaAccuracy
from landcoverpy.pipeline import change, regionstats, taskstream, vectorize
from landcoverpy.pipeline.aoi import AreaOfInterest, build_mosaic, export_mosaic, tiles_for_aoi
from landcoverpy.pipeline.classification import ClassifyReport, classify
from landcoverpy.pipeline.cluster import dashboard_link, dask_client, ride_out_scheduler
from landcoverpy.pipeline.workflow import (
    RunResult,
    export_outputs,
    profiled,
    publish_map_page,
    publish_profile,
    publish_report,
    resolve_tiles,
    run_workflow,
)
from landcoverpy.scratch import scratch_dir
from landcoverpy.sources.base import Provider

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mosaic:
    """An area of interest's mosaic: its record and, when exported, its files."""

    source: str
    record: records.MapRecord
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    """What ``run`` made and where it put it (keys in the maps bucket, files in the export folder)."""

    result: RunResult
    seconds: float
    stac_key: str
    report_key: str
    map_page_key: str | None = None
    profile_key: str | None = None
    task_stream: taskstream.Collected | None = None
    exported: dict[str, Path] = field(default_factory=dict)
    mosaic: Mosaic | None = None


def area_mosaic(
    ctx: Context, aoi: AreaOfInterest, aoi_crs: str | None, maps: dict[str, records.MapRecord], output_dir: Path | None
) -> Mosaic:
    """The area's mosaic per level from the maps of the tiles it touches; exported when asked."""
    wanted = set(tiles_for_aoi(aoi))
    record = ctx.store.reading(
        lambda: build_mosaic(ctx, aoi, {t: r for t, r in maps.items() if t in wanted}, aoi_crs),
        f"mosaic of {aoi.source}",
    )
    files = export_mosaic(ctx, record, output_dir) if output_dir is not None else {}
    return Mosaic(str(aoi.source), record, files)


def run(
    ctx: Context,
    inputs: Inputs,
    provider: Provider,
    tiles: list[str] | None = None,
    holdout: LabelledPoints | None = None,
    output_dir: Path | None = None,
    progress: bool = True,
    aoi: AreaOfInterest | None = None,
    aoi_crs: str | None = None,
    profile: bool = False,
    on_dashboard: Callable[[str], None] | None = None,
    change_from: str | None = None,
    model: str | None = None,
) -> RunOutcome:
    """Every stage (acquire, composite, DEM, dataset, train, classify), then the STAC catalog, the
    report, the map page and, with ``output_dir``, the export; with ``aoi`` the area's mosaic; with
    ``change_from`` (an earlier map or run), the change from its maps to this run's, in the report;
    with ``model`` (a hierarchy id), that model classifies the inputs' seasons instead of one
    trained from the points (the yearly use: the same model on each year's seasons)."""
    cfg = ctx.settings
    if change_from is not None:
        require_map_or_run(ctx, change_from)  # before any work: a mistyped id costs nothing
    given = lookup.hierarchy(ctx, model) if model is not None else None
    start = time.perf_counter()
    profile_key: str | None = None
    stream: taskstream.Collected | None = None
    exported: dict[str, Path] = {}
    with scratch_dir(cfg.TMP_DIR) as tmp:
        profile_path = Path(tmp) / "dask-profile.html" if profile else None
        with dask_client(cfg, worker_profiler=profile) as client:
            link = dashboard_link(client)
            if link and on_dashboard is not None:
                on_dashboard(link)
            with profiled(profile_path, client) as stream:
                result = ride_out_scheduler(
                    client,
                    cfg,
                    lambda: run_workflow(ctx, inputs, provider, client, tiles, holdout, progress, aoi, given),
                )
        if profile_path is not None:
            profile_key = publish_profile(ctx, result, profile_path, stream)
            if output_dir is not None:
                output_dir.mkdir(parents=True, exist_ok=True)
                exported["dask-profile"] = Path(shutil.copyfile(profile_path, output_dir / "dask-profile.html"))
                if stream is not None:
                    (output_dir / "tasks.csv").write_text(taskstream.to_csv(stream.runs), encoding="utf-8")
                    exported["tasks"] = output_dir / "tasks.csv"
    if cfg.VECTOR_OUTPUT:
        for tile, rec in list(result.maps.items()):
            result.maps[tile] = vectorize.vectorize_record(
                ctx, rec, vectorize.LEVEL_LAYERS["both"], cfg.MMU_PIXELS, cfg.MMU_HA
            )[0]
    if change_from is not None:
        with scratch_dir(cfg.TMP_DIR) as tmp:
            changes_since(ctx, result, change_from, output_dir / "change" if output_dir is not None else Path(tmp))
    stac_key = publish_catalog(ctx)
    report_key = publish_report(ctx, result)
    map_page_key = publish_map_page(ctx, result, output_dir)
    seconds = time.perf_counter() - start
    if output_dir is not None:
        exported |= export_outputs(ctx, result, output_dir)
        exported["stac"] = write_catalog(ctx, output_dir / "stac")
    mosaic = area_mosaic(ctx, aoi, aoi_crs, result.maps, output_dir) if aoi is not None and result.maps else None
    return RunOutcome(result, seconds, stac_key, report_key, map_page_key, profile_key, stream, exported, mosaic)


@dataclass(frozen=True)
class RebuildInputs:
    """What ``verify --repair`` rebuilds with: the inputs and provider a ``run`` takes."""

    inputs: Inputs
    provider: Provider
    tiles: list[str] | None = None


@dataclass(frozen=True)
class RepairOutcome:
    """What ``verify`` found and, with a repair, what was discarded, rebuilt and pruned."""

    found: integrity.Verification
    discarded: list[records.Record] = field(default_factory=list)
    rebuilt: list[records.Record] = field(default_factory=list)
    pruned: int = 0
    after: integrity.Verification | None = None  # the store checked again after the rebuild

    @property
    def not_rebuilt(self) -> list[records.Record]:
        """Stale records these inputs do not make (another run's seasons, points or tiles)."""
        again = {(r.COLLECTION, r.id) for r in self.rebuilt}
        return [r for r in self.discarded if (r.COLLECTION, r.id) not in again]


def check_and_repair(
    ctx: Context,
    checksums: bool = False,
    repair: bool = False,
    rebuild: RebuildInputs | None = None,
    prune_orphans: bool = False,
    progress: bool = True,
) -> RepairOutcome:
    """``verify``: every record's objects against the store; with ``repair`` the stale records go
    with their objects and, with ``rebuild``, the workflow runs on those inputs, which remakes
    each of them (everything intact is reused, the ids are the same) and the store is checked
    again; with ``prune_orphans`` the objects no record owns go."""
    found = integrity.verify(ctx, checksums=checksums)
    discarded = integrity.repair(ctx, found) if repair and found.damaged else []
    pruned = integrity.prune_orphans(ctx, found) if prune_orphans and found.orphans else 0
    if not (discarded and rebuild is not None):
        return RepairOutcome(found, discarded, [], pruned)
    run(ctx, rebuild.inputs, rebuild.provider, rebuild.tiles, progress=progress)
    rebuilt = [r for r in discarded if ctx.catalog.exists(r.COLLECTION, r.id)]
    return RepairOutcome(found, discarded, rebuilt, pruned, integrity.verify(ctx, checksums=checksums))


@dataclass(frozen=True)
class ClassifyOutcome:
    """The classification report of ``classify`` and the model it used."""

    report: ClassifyReport
    hierarchy: records.HierarchyRecord
    seasons: list[Season]
    mosaic: Mosaic | None = None

    @property
    def maps(self) -> dict[str, records.MapRecord]:
        return {t.tile: t.record for t in self.report.tiles if t.record}

    @property
    def skipped(self) -> dict[str, str]:
        return {t.tile: t.skipped for t in self.report.tiles if t.skipped}


def choose_model(
    ctx: Context, inputs: Inputs | None, model: str | None, tiles: list[str] | None
) -> tuple[records.HierarchyRecord, list[Season], list[str]]:
    """The hierarchy to classify with, its seasons and the tiles: ``model`` when given; else the
    one the points and settings identify; without points, the newest trained with these settings
    (its seasons and training tiles from its record)."""
    cfg = ctx.settings
    composite, params = CompositeParams.from_settings(cfg), ModelParams.from_settings(cfg)
    if model is None and inputs is not None:
        hierarchy = lookup.hierarchy_for_inputs(
            ctx,
            inputs.points.frame,
            inputs.seasons,
            inputs.lc_labels,
            inputs.sl_labels,
            composite,
            params,
            cfg.uses_dem,
            cfg.NEIGHBOURHOOD,
            cfg.SUBCATEGORY_PREDICTION,
        )
        return hierarchy, inputs.seasons, resolve_tiles(tiles or cfg.TILES_TO_PREDICT, inputs, ctx.catalog)
    hierarchy = lookup.hierarchy(ctx, model) if model else lookup.hierarchy_for_settings(ctx, composite, params)
    seasons = lookup.model_seasons(hierarchy)
    wanted = resolve_tiles(tiles or cfg.TILES_TO_PREDICT, lookup.model_training_tiles(ctx, hierarchy), ctx.catalog)
    log.info(
        "classifying with model %s (%s), seasons %s",
        hierarchy.id,
        hierarchy.model_type,
        ", ".join(s.name for s in seasons),
    )
    return hierarchy, seasons, wanted


def classify_tiles(
    ctx: Context,
    tiles: list[str] | None,
    inputs: Inputs | None = None,
    model: str | None = None,
    block_size: int | None = None,
    progress: bool = True,
    aoi: AreaOfInterest | None = None,
    aoi_crs: str | None = None,
) -> ClassifyOutcome:
    """Classify ``tiles`` (and those the area touches) with the chosen model, mosaic the area,
    republish the STAC catalog. Raises when no tile at all could be classified."""
    if aoi is not None:
        tiles = sorted(set(tiles or []) | set(tiles_for_aoi(aoi)))
    hierarchy, seasons, wanted = choose_model(ctx, inputs, model, tiles)
    with dask_client(ctx.settings) as client:
        report = ride_out_scheduler(
            client,
            ctx.settings,
            lambda: classify(ctx, wanted, seasons, hierarchy, client, block_size, progress),
            "classify",
        )
    outcome = ClassifyOutcome(report, hierarchy, seasons)
    if ctx.settings.VECTOR_OUTPUT:
        for rec in outcome.maps.values():
            vectorize.vectorize_record(
                ctx, rec, vectorize.LEVEL_LAYERS["both"], ctx.settings.MMU_PIXELS, ctx.settings.MMU_HA
            )
    if aoi is not None and outcome.maps:
        outcome = ClassifyOutcome(report, hierarchy, seasons, area_mosaic(ctx, aoi, aoi_crs, outcome.maps, None))
    publish_catalog(ctx)
    return outcome


def require_some_maps(outcome: ClassifyOutcome) -> None:
    """The API's rule: refuse when every tile was skipped (the command line reports and exits 2)."""
    if outcome.skipped and not outcome.maps:
        raise InputValidationError(
            "no tile could be classified: " + "; ".join(f"{t}: {w}" for t, w in outcome.skipped.items())
        )


@dataclass(frozen=True)
class RegionStatsOutcome:
    """What ``stats`` computed and wrote."""

    regions: int
    maps: int
    csv: Path
    gpkg: Path
    estimates: Path | None = None  # area-adjusted areas per region, with a reference sample


def region_stats(
    ctx: Context,
    regions_path: Path,
    field: str | None,
    tiles: list[str] | None,
    output_dir: Path,
    reference: Path | None = None,
) -> RegionStatsOutcome:
    """Class statistics per region over the latest map of each tile (of ``tiles``), both levels,
    written as region_stats.csv and region_stats.gpkg; with a ``reference`` sample (points with
    their reference classes), area-adjusted areas per region in region_area_adjusted.csv."""
    zones = regionstats.load_regions(regions_path, field)
    maps = latest_maps(ctx, tiles)
    by_level: dict[str, regionstats.LevelStats] = {}
    share = regionstats.TileShare.of({t: rec.pixel_grid for t, rec in maps.items()})
    with ctx.store.rasterio_env():
        for tile, record in maps.items():
            for level, (layer, confidence) in regionstats.LEVELS.items():
                if layer not in record.outputs:
                    continue
                conf = record.outputs.get(confidence)
                loc = record.outputs[layer]
                got = ctx.store.reading(
                    functools.partial(
                        regionstats.map_level_stats,
                        ctx.store.raster_uri(loc.bucket, loc.key),
                        ctx.store.raster_uri(conf.bucket, conf.key) if conf else None,
                        zones,
                        {v: n for n, v in record.class_values(layer).items()},
                        tile=tile,
                        share=share,
                    ),
                    f"statistics of {loc.bucket}/{loc.key}",
                )
                by_level[level] = regionstats.merge(by_level.get(level), got)
    table = [row for level, got in by_level.items() for row in regionstats.rows(zones, level, got)]
    estimates = None
    if reference is not None:
        rows = region_estimates(ctx, maps, zones, by_level, reference)
        estimates = regionstats.write_estimates_csv(rows, output_dir / "region_area_adjusted.csv")
    return RegionStatsOutcome(
        len(zones.names),
        len(maps),
        regionstats.write_csv(table, output_dir / "region_stats.csv"),
        regionstats.write_gpkg(zones, by_level, output_dir / "region_stats.gpkg"),
        estimates,
    )


def region_estimates(
    ctx: Context,
    maps: dict[str, records.MapRecord],
    zones: regionstats.Regions,
    by_level: dict[str, regionstats.LevelStats],
    reference: Path,
) -> list[dict[str, object]]:
    """Area-adjusted class areas per region and level from the reference points."""
    first = next(iter(maps.values()))
    lc = LabelSet("the maps' categories", first.class_values("classification"), 1)
    sl_values = {n: v for n, v in first.class_values("sl_classification").items() if v > 1}
    sl = LabelSet("the maps' subcategories", sl_values, 2)
    points = load_points(reference, lc, sl, ctx.settings.LC_PROPERTY, ctx.settings.SL_PROPERTY).frame
    out: list[dict[str, object]] = []
    for level, (layer, _) in regionstats.LEVELS.items():
        if level not in by_level:
            continue
        mapped = np.zeros(len(points), dtype="int64")
        for tile, pts in points.groupby("tile"):
            rec = maps.get(str(tile))
            if rec is not None and layer in rec.outputs:
                mapped[points.index.get_indexer(pts.index)] = sample_map(ctx, rec, layer, pts)
        column = "category" if level == "category" else "subcategory"
        out += regionstats.region_area_estimates(
            zones,
            level,
            by_level[level],
            points["longitude"].to_numpy(),
            points["latitude"].to_numpy(),
            points[column].astype(str).tolist(),
            mapped,
            min_value=1 if level == "category" else 2,
        )
    if not out:
        raise InputValidationError(f"{reference}: no reference point lies in a region on a classified pixel")
    return out


@dataclass(frozen=True)
class VectorOutcome:
    """The polygons ``vectorize`` made (or found made): per map id, object name -> stored object,
    and the files exported."""

    made: dict[str, dict[str, records.StoredObject]]
    files: dict[str, Path] = field(default_factory=dict)


def vectorize_maps(
    ctx: Context,
    ref: str | None,
    tile: str | None,
    level: str,
    mmu_pixels: int | None,
    mmu_ha: float | None,
    output_dir: Path | None,
) -> VectorOutcome:
    """Polygons of a map (by map or run id; default: the latest map of ``tile``, or of every
    tile) at ``level`` (category, subcategory or both), stored beside the maps and exported."""
    if level not in vectorize.LEVEL_LAYERS:
        raise InputValidationError(f"--level {level!r}: use {', '.join(vectorize.LEVEL_LAYERS)}")
    maps = [map_for(ctx, ref, tile)] if ref else list(latest_maps(ctx, [tile] if tile else None).values())
    made: dict[str, dict[str, records.StoredObject]] = {}
    files: dict[str, Path] = {}
    for rec in maps:
        _, objects = vectorize.vectorize_record(ctx, rec, vectorize.LEVEL_LAYERS[level], mmu_pixels, mmu_ha)
        made[rec.id] = objects
        if output_dir is not None:
            for name, obj in objects.items():
                exported = vectorize.export_name(name, rec.tile)
                files[exported] = ctx.store.get_file(obj.bucket, obj.key, output_dir / exported)
    return VectorOutcome(made, files)


def latest_maps(ctx: Context, tiles: list[str] | None, required: bool = True) -> dict[str, records.MapRecord]:
    """The most recently used classification map of each tile (of ``tiles``, else of every tile)."""
    maps: dict[str, records.MapRecord] = {}
    for rec in lookup.maps_of(ctx):  # most recently used first
        if tiles is None or rec.tile in tiles:
            maps.setdefault(rec.tile, rec)
    if not maps and required:
        raise ModelError("no map yet: run `landcoverpy run` or `landcoverpy classify` first")
    return maps


CHANGE_LAYERS = {"category": "classification", "subcategory": "sl_classification"}


@dataclass(frozen=True)
class ChangeOutcome:
    """What ``change`` compared and wrote; ``estimate`` with a reference sample."""

    before: records.MapRecord
    after: records.MapRecord
    transitions: change.Transitions
    change_map: Path
    table: Path
    estimate: AreaAccuracy | None = None
    estimate_table: Path | None = None
    figure: Path | None = None
    record: records.MapRecord | None = None  # the change product as catalogued


def require_map_or_run(ctx: Context, ref: str) -> None:
    """Refuse an id that names neither a map nor a run of the catalog."""
    if (
        records.load(ctx.catalog, records.MapRecord, ref) is None
        and records.load(ctx.catalog, records.RunRecord, ref) is None
    ):
        raise ModelError(f"no map or run {ref!r} in the catalog: see `landcoverpy status` and the run reports")


def changes_since(ctx: Context, run: RunResult, ref: str, output_dir: Path) -> None:
    """The change from the earlier map or run ``ref`` to each map of ``run``, at each level both
    maps have: catalogued, kept in ``run.changes`` (for the report) and the run's record. What
    cannot be compared (no earlier map of a tile, other class names) is one of the run's problems."""
    run.change_from = ref
    for tile, after in sorted(run.maps.items()):
        try:
            before = map_for(ctx, ref, tile)
        except ModelError as exc:
            run.problems.append(f"{tile}: no change product ({exc})")
            continue
        for level, layer in CHANGE_LAYERS.items():
            if layer not in before.outputs or layer not in after.outputs:
                continue
            try:
                got = map_change(ctx, before.id, after.id, tile, level, output_dir)
            except (ModelError, InputValidationError) as exc:
                run.problems.append(f"{tile} {level}: no change product ({exc})")
                continue
            if got.record is not None:
                run.changes.append(got.record)
                run.change_notes[got.record.id] = map_origin(ctx, before)
    existing = records.load(ctx.catalog, records.RunRecord, run.run_id)
    if existing is not None:
        update = {"changes": [c.id for c in run.changes], "problems": run.problems}
        records.save(ctx.catalog, existing.model_copy(update=update))


def map_origin(ctx: Context, rec: records.MapRecord) -> str:
    """What made a map, in words: its model, the model type and the seasons it was trained on."""
    hierarchy = records.load(ctx.catalog, records.HierarchyRecord, rec.hierarchy or "")
    if hierarchy is None:
        return f"model {rec.hierarchy} (no longer in the catalog)"
    seasons = ", ".join(f"{name} {start} to {end}" for name, start, end in hierarchy.season_defs or [])
    return f"model {hierarchy.id} ({hierarchy.model_type}) trained on seasons {seasons or 'not recorded'}"


def map_for(ctx: Context, ref: str, tile: str | None) -> records.MapRecord:
    """A map by id, or the map a run made (of ``tile`` when it made several)."""
    rec = records.load(ctx.catalog, records.MapRecord, ref)
    if rec is not None:
        return rec
    run = records.load(ctx.catalog, records.RunRecord, ref)
    if run is None:
        raise ModelError(f"no map or run {ref!r} in the catalog: see `landcoverpy status` and the run reports")
    maps = dict(run.maps or {})
    wanted = tile or (next(iter(maps)) if len(maps) == 1 else None)
    if wanted is None or wanted not in maps:
        raise ModelError(f"run {ref} made maps of {', '.join(sorted(maps))}: choose one with --tile")
    found = records.load(ctx.catalog, records.MapRecord, maps[wanted])
    if found is None:
        raise ModelError(f"map {maps[wanted]} of run {ref} is no longer in the catalog (pruned?)")
    return found


def map_change(
    ctx: Context,
    from_ref: str,
    to_ref: str,
    tile: str | None,
    level: str,
    output_dir: Path,
    reference: Path | None = None,
    aoi: AreaOfInterest | None = None,
) -> ChangeOutcome:
    """The change between two maps of one tile at ``level`` (within ``aoi`` when given): change
    map and transitions, and with a reference sample of change, the area-adjusted transition
    areas."""
    layer = CHANGE_LAYERS[level]
    before, after = map_for(ctx, from_ref, tile), map_for(ctx, to_ref, tile)
    if before.kind != "classification" or after.kind != "classification":
        raise ModelError(
            f"{before.id} is a {before.kind} and {after.id} a {after.kind}: change compares two classification maps"
        )
    if before.tile != after.tile:
        raise ModelError(f"{before.id} maps tile {before.tile} and {after.id} tile {after.tile}: compare one place")
    classes = change.same_classes(
        {v: n for n, v in before.class_values(layer).items()},
        {v: n for n, v in after.class_values(layer).items()},
        before.id,
        after.id,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / f"change_{level}_{before.tile}.tif"
    with ctx.store.rasterio_env():
        t = ctx.store.reading(
            functools.partial(
                change.change_map,
                ctx.store.raster_uri(before.outputs[layer].bucket, before.outputs[layer].key),
                ctx.store.raster_uri(after.outputs[layer].bucket, after.outputs[layer].key),
                classes,
                out,
                area=aoi.geometry if aoi is not None else None,
            ),
            f"change between {before.id} and {after.id}",
        )
    table = change.write_transitions(t, output_dir / f"transitions_{level}_{before.tile}.csv")
    figure = change.plot_transitions(t, output_dir / f"transitions_{level}_{before.tile}.png")
    est, path = None, None
    if reference is not None:
        est = change.area_adjusted_change(str(out), t, change.read_change_sample(reference, classes))
        path = change.write_area_estimates(est, output_dir / f"change_area_{level}_{before.tile}.csv")
    files = [table, figure] + ([path] if path else [])
    record = catalogue_change(ctx, before, after, level, t, out, files, aoi)
    return ChangeOutcome(before, after, t, out, table, est, path, figure, record)


def catalogue_change(
    ctx: Context,
    before: records.MapRecord,
    after: records.MapRecord,
    level: str,
    t: change.Transitions,
    change_map: Path,
    files: list[Path],
    aoi: AreaOfInterest | None = None,
) -> records.MapRecord:
    """The change product in the maps bucket beside the maps (change COG with its style and GDAL
    names, the transition tables and figure), recorded with the two maps it compares as its
    lineage (its STAC item names them)."""
    cid = ids.change_id(before.id, after.id, level, before.tile, aoi.wkb_hex if aoi is not None else None)
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    name = f"change_{level}"

    def put(path: Path, ext: str, as_name: str = name) -> records.StoredObject:
        return records.StoredObject(
            **publish.put_file(ctx.store, bucket, keys.map_key(before.tile, cid, as_name, ext), path)
        )

    cog = put(change_map, ".tif")
    style = put(change_map.with_suffix(".qml"), ".qml")
    aux = put(Path(f"{change_map}.aux.xml"), ".tif.aux.xml")
    output = records.MapOutput(**cog.model_dump(), style=style.key, aux=aux.key, nodata=0)
    attachments = {}
    for path in files:
        stem = path.stem.rsplit("_", 1)[0]  # transitions_category_30SUF -> transitions_category
        attachments[f"{stem}{path.suffix}"] = put(path, path.suffix, stem)
    record = records.MapRecord(
        id=cid,
        tile=before.tile,
        kind="change",
        grid=before.grid,
        outputs={"change": output},
        classes={"change": {str(t.code(a, b)): t.label(a, b) for a, b in t.pairs()}},
        sources=[before.id, after.id],
        level=level,
        attachments=attachments,
        pixel_counts={"change": {t.label(a, b): int(t.pixels[a, b]) for a, b in t.pairs() if t.pixels[a, b]}},
        created=publish.now_iso(),
        code_version=__version__,
    )
    return records.store(ctx.catalog, record)
