"""The whole job: acquire -> composite -> dataset -> train -> classify -> report.

Every stage is idempotent: a second run with the same inputs finds every output catalogued and
says so. A run record (stages, timings, outputs) is kept in the ``runs`` collection.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import performance_report

from landcoverpy import records, report_html
from landcoverpy.assets.params import CompositeParams, ModelParams
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError, LandcoverError
from landcoverpy.inputs import Inputs, LabelledPoints, Season
from landcoverpy.pipeline import taskstream
from landcoverpy.pipeline.accuracy import holdout_areas
from landcoverpy.pipeline.acquire import acquire
from landcoverpy.pipeline.aoi import AreaOfInterest, acquisition_windows
from landcoverpy.pipeline.change import ChangeSummary, summarise
from landcoverpy.pipeline.classification import classify, model_composite_params
from landcoverpy.pipeline.composites import composite
from landcoverpy.pipeline.datasets import build_dataset
from landcoverpy.pipeline.dem import dem_stage
from landcoverpy.pipeline.evaluation import holdout_accuracy
from landcoverpy.pipeline.training import train, trees_note
from landcoverpy.pipeline.vectorize import export_name
from landcoverpy.raster.grid import Grid
from landcoverpy.records import HierarchyRecord, MemberRecord, TrainingDatasetRecord
from landcoverpy.reports import class_colours
from landcoverpy.sentinel2 import normalise_tile
from landcoverpy.sources.base import Provider
from landcoverpy.sources.dem import make_dem_source
from landcoverpy.viewer import map_page

log = logging.getLogger(__name__)


def composite_params(settings: Any) -> CompositeParams:
    return CompositeParams.from_settings(settings)


def training_tiles(inputs: Inputs) -> list[str]:
    return sorted(set(inputs.points.frame["tile"]))


def resolve_tiles(spec: list[str] | str | None, inputs: Inputs | list[str], catalog: Any = None) -> list[str]:
    """``--tiles``/TILES_TO_PREDICT: explicit ids; ``prediction`` or nothing = the points' tiles
    (``inputs``, or the training tiles given as a list); ``all`` = every tile with composites in
    the catalog (needs ``catalog``)."""
    items = (spec.replace(",", " ").split() if isinstance(spec, str) else list(spec or [])) or ["prediction"]
    if items == ["prediction"]:
        tiles = sorted(inputs) if isinstance(inputs, list) else training_tiles(inputs)
        if not tiles:
            raise InputValidationError("no tiles to classify: give --tiles (or TILES_TO_PREDICT)")
        return tiles
    if items == ["all"]:
        if catalog is None:
            raise InputValidationError("--tiles all needs the catalog (every tile with composites)")
        tiles = sorted({r.tile for r in records.find(catalog, records.CompositeRecord)})
        if not tiles:
            raise InputValidationError("--tiles all: no tile has composites yet; run `landcoverpy composite`")
        return tiles
    return sorted({normalise_tile(t) for t in items})


@dataclass
class StageTiming:
    name: str
    seconds: float = 0.0
    did_work: bool = False
    detail: str = ""


@dataclass
class RunResult:
    run_id: str
    preset: str | None = None  # the named bundle of settings the run used
    stages: list[StageTiming] = field(default_factory=list)
    maps: dict[str, records.MapRecord] = field(default_factory=dict)
    hierarchy: HierarchyRecord | None = None
    dataset: TrainingDatasetRecord | None = None
    holdout: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)  # what did not go through, and what to do
    changes: list[records.MapRecord] = field(default_factory=list)  # change products from an earlier map
    change_from: str | None = None  # the earlier map or run they start from
    change_notes: dict[str, str] = field(default_factory=dict)  # change id -> what made its earlier map

    @property
    def did_work(self) -> bool:
        return any(s.did_work for s in self.stages)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[StageTiming]:
        """Time one stage: the block fills in ``did_work`` and ``detail``; the stage is recorded
        with its wall-clock seconds when the block ends without an error."""
        timing = StageTiming(name)
        start = time.perf_counter()
        yield timing
        timing.seconds = time.perf_counter() - start
        self.stages.append(timing)


def run_workflow(
    ctx: Context,
    inputs: Inputs,
    provider: Provider,
    client: Any,
    tiles: list[str] | None = None,
    holdout: LabelledPoints | None = None,
    progress: bool = True,
    aoi: AreaOfInterest | None = None,
    model: HierarchyRecord | None = None,
) -> RunResult:
    """Every stage for ``inputs``: acquire, composite, DEM, dataset, train, classify. With ``aoi``,
    only the part of each tile the area and the labelled points need is acquired (where the
    provider reads byte ranges), and so composited and classified. With ``model`` (a trained
    hierarchy), no dataset or training: the seasons' composites (the model's season names, any
    dates: another year) are made as the model's were and classified with it."""
    settings = ctx.settings
    if model is not None:
        same_season_names(model, inputs.seasons)
    ctx.ensure_buckets()
    run = RunResult(
        run_id=f"run-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", preset=ctx.settings.PRESET
    )
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    train_tiles = training_tiles(inputs) if model is None else []
    predict_tiles = tiles or training_tiles(inputs)
    all_tiles = sorted(set(train_tiles) | set(predict_tiles))
    params = composite_params(settings) if model is None else model_composite_params(ctx, model)
    log.info("tiles: training %s, prediction %s", ", ".join(train_tiles), ", ".join(predict_tiles))

    with run.stage("acquire") as stage:
        windows = None
        if aoi is not None:
            labelled = [inputs.points.frame] + ([holdout.frame] if holdout is not None else [])
            windows = acquisition_windows(aoi, all_tiles, labelled)
        acq = acquire(ctx, provider, all_tiles, inputs.seasons, client, progress, windows)
        stage.did_work = any(e.fetched for e in acq.entries)
        stage.detail = "; ".join([f"{acq.fetched_bytes / 1e6:.1f} MB fetched", *acq.lines()])
    run.problems += acquisition_problems(acq, settings)

    ctx.check_lease()
    with run.stage("composite") as stage:
        comp = composite(ctx, all_tiles, inputs.seasons, client, params, progress)
        stage.did_work = bool(comp.built)
        stage.detail = f"{len(comp.built)} built, {len(comp.reused)} reused, {len(comp.missing)} missing"
    if comp.failed:
        raise LandcoverError("composites failed: " + "; ".join(f"{k}: {v}" for k, v in comp.failed.items()))

    dem_source = make_dem_source(settings)
    if dem_source is not None:
        with run.stage("dem") as stage:
            status = dem_stage(ctx, all_tiles, dem_source, client, progress)
            stage.did_work = any(v.startswith("built") for v in status.values())
            stage.detail = "; ".join(f"{k}: {v}" for k, v in status.items())

    if model is None:
        hierarchy = train_stage(ctx, run, inputs, client, progress)
    else:
        hierarchy = run.hierarchy = model
        run.dataset = records.load(ctx.catalog, TrainingDatasetRecord, model.dataset_id or "")
        log.info("classifying with model %s (given), trained on dataset %s", model.id, model.dataset_id)

    ctx.check_lease()
    with run.stage("classify") as stage:
        rep = classify(ctx, predict_tiles, inputs.seasons, hierarchy, client, progress=progress)
        stage.did_work = any(not r.reused and r.record for r in rep.tiles)
        stage.detail = "; ".join(rep.lines())
    run.maps = {r.tile: r.record for r in rep.tiles if r.record}
    run.problems += [f"{r.tile}: not classified ({r.skipped})" for r in rep.tiles if r.skipped]
    if not run.maps:
        raise InputValidationError("no tile could be classified: " + "; ".join(run.problems or rep.lines()))
    if holdout is not None:
        run.holdout = holdout_accuracy(ctx, run.maps, holdout, inputs.lc_labels.values, inputs.sl_labels.values)
        if run.holdout.get("n"):
            run.holdout["area"] = holdout_areas(ctx, run.maps, holdout.frame)
    records.store(
        ctx.catalog,
        records.RunRecord(
            id=run.run_id,
            started=started,
            finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            did_work=run.did_work,
            preset=run.preset,
            stages=[
                {"name": s.name, "seconds": round(s.seconds, 2), "did_work": s.did_work, "detail": s.detail}
                for s in run.stages
            ],
            maps={t: r.id for t, r in run.maps.items()},
            hierarchy=hierarchy.id,
            dataset=run.dataset.id if run.dataset else None,
            holdout=run.holdout,
            problems=run.problems,
        ),
    )
    return run


def train_stage(ctx: Context, run: RunResult, inputs: Inputs, client: Any, progress: bool) -> HierarchyRecord:
    """The dataset and train stages of a run: the hierarchy its points train."""
    settings = ctx.settings
    ctx.check_lease()
    with run.stage("dataset") as stage:
        try:
            ds = build_dataset(ctx, inputs, client, params=composite_params(settings), progress=progress)
        except InputValidationError as exc:
            if not run.problems:
                raise
            raise InputValidationError("no training data: " + "; ".join(run.problems)) from exc
        stage.did_work = not ds.reused
        stage.detail = f"{ds.record.n_samples} samples from {ds.record.n_points} points"
    run.problems += [f"{tile}: training points not used ({why})" for tile, why in ds.skipped_tiles.items()]
    run.dataset = ds.record

    ctx.check_lease()
    with run.stage("train") as stage:
        hierarchy, reused = train(
            ctx,
            ds.record,
            inputs.lc_labels,
            inputs.sl_labels,
            ModelParams.from_settings(settings),
            subcategories=settings.SUBCATEGORY_PREDICTION,
        )
        m = hierarchy.metrics.category
        stage.did_work = not reused
        stage.detail = (
            f"category OA {m.overall_accuracy:.3f}, kappa {m.kappa:.3f}, macro F1 {m.macro_f1:.3f}"
            + trees_note(hierarchy, None)
        )
    run.hierarchy = hierarchy
    return hierarchy


def same_season_names(model: HierarchyRecord, seasons: list[Season]) -> None:
    """A model applies to composites of seasons with the names it was trained on (its features are
    ``{season}_{layer}``); the dates may differ (another year)."""
    trained = {name for name, _, _ in model.season_defs or []}
    given = {s.name for s in seasons}
    if model.season_defs and trained != given:
        raise InputValidationError(
            f"model {model.id} was trained on seasons {', '.join(sorted(trained))}; the seasons file has "
            f"{', '.join(sorted(given))}. Give each year's seasons.json the model's season names with that year's dates"
        )


def acquisition_problems(acq: Any, settings: Any) -> list[str]:
    """What acquisition could not get, with what to change (a run already acquires and
    composites: the fix is in the inputs or settings, not in another command)."""
    out = []
    for e in acq.entries:
        if e.error:
            out.append(
                f"{e.tile} {e.season}: the product search failed ({e.error}); check the provider settings and rerun"
            )
        elif not e.selected:
            out.append(
                f"{e.tile} {e.season}: no usable product ({e.found} found, none with more than "
                f"MIN_USEFUL_DATA_PERCENTAGE={settings.MIN_USEFUL_DATA_PERCENTAGE:g}% useful data); widen the "
                "season in the seasons file, lower MIN_USEFUL_DATA_PERCENTAGE, or use another provider"
            )
        for pid, why in e.failed.items():
            out.append(f"{e.tile} {e.season}: product {pid} could not be fetched ({why}); rerun to retry it")
    return out


def export_outputs(ctx: Context, run: RunResult, output_dir: Path) -> dict[str, Path]:
    """Copy maps, quicklooks, confusion matrices and a report to ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for tile, rec in run.maps.items():  # exactly the objects the catalog records for this run's maps
        for name, loc in rec.outputs.items():
            written[f"{name}_{tile}"] = ctx.store.get_file(loc.bucket, loc.key, output_dir / f"{name}_{tile}.tif")
            for c in loc.companions():
                path = output_dir / f"{name}_{tile}{c.suffix}"
                written[f"{name}_{tile}_{c.name}"] = ctx.store.get_file(loc.bucket, c.key, path)
        for name, vec in rec.vectors.items():  # polygons (VECTOR_OUTPUT)
            exported = export_name(name, tile)
            written[exported.replace(".", "_")] = ctx.store.get_file(vec.bucket, vec.key, output_dir / exported)
    assert run.hierarchy is not None
    bucket = ctx.settings.MINIO_BUCKET_MODELS
    for key in ctx.store.list(bucket, run.hierarchy.id + "/"):
        if key.endswith(("confusion_matrix.png", "confusion_matrix.csv", "metrics.json")):
            dest = output_dir / "models" / key.split("/", 1)[1]
            written[key] = ctx.store.get_file(bucket, key, dest)
    report = render_report(run)
    (output_dir / "report.md").write_text(report, encoding="utf-8")
    written["report"] = output_dir / "report.md"
    html = report_html.render(report_data(ctx, run, export_link))
    (output_dir / "report.html").write_text(html, encoding="utf-8")
    written["report_html"] = output_dir / "report.html"
    (output_dir / "run.json").write_text(
        json.dumps(
            {
                "run_id": run.run_id,
                "preset": run.preset,
                "stages": [s.__dict__ for s in run.stages],
                "holdout": run.holdout,
                "maps": {
                    t: {
                        "_id": r.id,
                        "hierarchy": r.hierarchy,
                        "composites": r.composites,
                        "pixel_counts": r.pixel_counts,
                        "area_km2": r.area_km2,
                        "nodata_pixels": r.nodata_pixels,
                        "objects": {
                            n: {"bucket": loc.bucket, "key": loc.key, "sha256": loc.sha256, "size": loc.size}
                            for n, loc in r.outputs.items()
                        },
                    }
                    for t, r in run.maps.items()
                },
                "hierarchy": run.hierarchy.id,
                "dataset": run.dataset.id if run.dataset else None,
                "changes": {
                    c.id: {"level": c.level, "tile": c.tile, "from": c.sources[0], "to": c.sources[1]}
                    for c in run.changes
                },
                "model_metrics": run.hierarchy.metrics.to_doc(),
            },
            indent=2,
            default=str,
        )
    )
    return written


def export_link(kind: str, tile: str, name: str, loc: dict[str, Any], ext: str) -> str:
    """Where an output lies in the export folder (as export_outputs names it)."""
    if kind == "map":
        return f"{name}_{tile}{ext}"
    if kind == "vector":
        return export_name(name, tile)
    if kind == "change":  # as services.changes_since writes them
        return f"change/{name}_{tile}{ext}"
    if kind == "model":
        return "models/" + loc["key"].split("/", 1)[1]
    if kind == "viewer":
        return "map.html"
    return name


def bucket_link(kind: str, tile: str, name: str, loc: dict[str, Any], ext: str) -> str:
    """Relative to a report stored one level down in the maps bucket (latest/, reports/): works
    with path-style URLs (MinIO) and in the console's object browser."""
    if kind in ("map", "vector", "change"):
        return f"../{loc['key']}"
    if kind == "model":
        return f"../../{loc['bucket']}/{loc['key']}"
    if kind == "viewer":
        return "../latest/map.html"
    return f"../{name}"


def report_data(
    ctx: Context, run: RunResult, link: Callable[[str, str, str, dict[str, Any], str], str]
) -> report_html.ReportData:
    """Everything the HTML report shows, read from the run, the catalog and the store."""

    assert run.hierarchy is not None
    hier = run.hierarchy
    views = []
    for tile, rec in sorted(run.maps.items()):
        quicklooks = {
            name: ctx.store.get_bytes(loc.bucket, loc.quicklook) for name, loc in rec.outputs.items() if loc.quicklook
        }
        legends, areas = {}, {}
        grid = Grid.from_dict(rec.grid or {})
        level_names = rec.classes if isinstance(rec.classes, dict) else {}
        for level, names in level_names.items():
            values = {n: int(v) for v, n in names.items()}
            colours = class_colours(values)
            legends[level] = [(v, n, colours[v]) for n, v in sorted(values.items(), key=lambda kv: kv[1])]
            counts = rec.pixel_counts.get(level, {})
            pixel_km2 = grid.resolution**2 / 1e6
            areas[level] = {n: c * pixel_km2 for n, c in counts.items()}
        links = {}
        for name, loc in rec.outputs.items():
            links[f"{name} (Cloud-Optimized GeoTIFF)"] = link("map", tile, name, loc.to_doc(), ".tif")
            for c in loc.companions():
                links[f"{name} {c.label}"] = link("map", tile, name, {"bucket": loc.bucket, "key": c.key}, c.suffix)
        for name, vec in sorted(rec.vectors.items()):
            links[f"{name} (polygons)"] = link("vector", tile, name, vec.model_dump(), "")
        views.append(
            report_html.MapView(
                tile, rec.id, quicklooks, legends, areas, links, (int(rec.nodata_pixels or 0), grid.width * grid.height)
            )
        )
    members = {}
    pictures = {}
    for value, model_id in sorted(hier.subcategory_models.items()):
        member = records.load(ctx.catalog, MemberRecord, model_id)
        if member is None:
            continue
        members[member.category or value] = ctx.store.get_json(member.bucket, member.prefix + "/metrics.json")["model"]
    cat_member = records.load(ctx.catalog, MemberRecord, hier.category_model)
    category = ctx.store.get_json(cat_member.bucket, cat_member.prefix + "/metrics.json") if cat_member else {}
    links = {}
    if cat_member:
        pictures["category confusion matrix"] = ctx.store.get_bytes(
            cat_member.bucket, cat_member.prefix + "/confusion_matrix.png"
        )
        for file in ("metrics.json", "confusion_matrix.csv", "confusion_matrix.png"):
            links[f"category model {file}"] = link(
                "model", "", file, {"bucket": cat_member.bucket, "key": f"{cat_member.prefix}/{file}"}, ""
            )
    links["STAC catalog"] = link("other", "", "stac/catalog.json", {}, "")
    if ctx.settings.TILE_SERVER_URL:
        links["zoomable map (tile server)"] = link("viewer", "", "map.html", {}, "")
    data = report_html.ReportData(
        run_id=run.run_id,
        created=report_html.now(),
        stages=[{"name": s.name, "seconds": s.seconds, "did_work": s.did_work, "detail": s.detail} for s in run.stages],
        maps=views,
        category_metrics=category.get("model", hier.metrics.category.to_doc()),
        category_baseline_f1=hier.metrics.category_baseline_macro_f1,
        subcategory_metrics=members,
        holdout=run.holdout,
        settings={
            "preset": run.preset,
            "model": hier.params,
            "composites": hier.composite_params,
            "seasons": hier.season_defs,
            "store": ctx.store.describe(),
            "catalog": ctx.catalog.describe(),
        },
        lineage={
            "maps": {t: r.id for t, r in run.maps.items()},
            "hierarchy": hier.id,
            "dataset": hier.dataset_id,
            "composites": sorted({c for r in run.maps.values() for c in r.composites}),
        },
        problems=list(run.problems),
        notes=left_out_notes(hier),
        links=links,
        pictures=pictures,
        changes=[change_view(ctx, rec, link, run.change_notes.get(rec.id, "")) for rec in run.changes],
        change_from=run.change_from,
    )
    return data


def change_summary(rec: records.MapRecord) -> ChangeSummary:
    """A catalogued change product's changed transitions in hectares and the area both maps cover."""
    return summarise(
        rec.classes.get("change", {}) if isinstance(rec.classes, dict) else {},
        rec.pixel_counts.get("change", {}),
        rec.pixel_grid.resolution**2 / 1e4,
    )


def change_view(
    ctx: Context, rec: records.MapRecord, link: Callable[[str, str, str, dict[str, Any], str], str], origin: str = ""
) -> report_html.ChangeView:
    """A change product as the report shows it: its transitions in hectares, figure and files."""
    level = rec.level or "category"
    figure = next((obj for name, obj in rec.attachments.items() if name.endswith(".png")), None)
    links = {}
    name = f"change_{level}"  # the change map's name, as services.catalogue_change stores it
    for loc in rec.outputs.values():
        links["change map (Cloud-Optimized GeoTIFF)"] = link("change", rec.tile, name, loc.to_doc(), ".tif")
        for c in loc.companions():
            links[f"change map {c.label}"] = link(
                "change", rec.tile, name, {"bucket": loc.bucket, "key": c.key}, c.suffix
            )
    for name, obj in sorted(rec.attachments.items()):
        stem, ext = name.rsplit(".", 1)
        links[name] = link("change", rec.tile, stem, obj.model_dump(), f".{ext}")
    return report_html.ChangeView(
        tile=rec.tile,
        level=level,
        change_id=rec.id,
        from_map=rec.sources[0],
        to_map=rec.sources[1],
        summary=change_summary(rec),
        from_origin=origin,
        figure=ctx.store.get_bytes(figure.bucket, figure.key) if figure else None,
        links=links,
    )


def left_out_notes(hierarchy: HierarchyRecord) -> list[str]:
    """Classes too small to learn (MIN_CLASS_POINTS), in words."""
    left = hierarchy.left_out
    minimum = hierarchy.params.get("min_class_points")
    notes = [
        f"category {c!r} has {n} labelled point(s), fewer than MIN_CLASS_POINTS={minimum}: it is not mapped"
        for c, n in sorted((left.get("category") or {}).items())
    ]
    for cat, classes in sorted((left.get("subcategory") or {}).items()):
        notes += [
            f"subcategory {c!r} of {cat!r} has {n} labelled point(s), fewer than MIN_CLASS_POINTS={minimum}: "
            "it is not mapped"
            for c, n in sorted(classes.items())
        ]
    return notes


def publish_map_page(ctx: Context, run: RunResult, output_dir: Path | None) -> str | None:
    """With a tile server configured, the zoomable map page: ``latest/map.html`` in the maps
    bucket, and ``map.html`` in the export folder."""
    if not ctx.settings.TILE_SERVER_URL or not run.maps:
        return None

    html = map_page([run.maps[t] for t in sorted(run.maps)], ctx.settings.TILE_SERVER_URL, f"landcoverpy {run.run_id}")
    ctx.check_lease()
    ctx.store.put_bytes(ctx.settings.MINIO_BUCKET_CLASSIFICATIONS, "latest/map.html", html.encode("utf-8"))
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "map.html").write_text(html, encoding="utf-8")
    return "latest/map.html"


def publish_report(ctx: Context, run: RunResult) -> str:
    """The HTML report in the maps bucket: ``reports/{run_id}.html`` and ``latest/report.html``."""
    html = report_html.render(report_data(ctx, run, bucket_link)).encode("utf-8")
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    key = f"reports/{run.run_id}.html"
    ctx.store.put_bytes(bucket, key, html)
    ctx.check_lease()
    ctx.store.copy(bucket, key, "latest/report.html")
    return key


@contextlib.contextmanager
def profiled(path: Path | None, client: Any = None) -> Iterator[taskstream.Collected | None]:
    """A Dask performance report of the block into ``path`` (nothing when None; needs bokeh
    where the scheduler runs), and the block's task stream (yielded, filled at the end)."""
    if path is None:
        yield None
        return

    with performance_report(filename=str(path)), taskstream.collect(client) as stream:
        yield stream


def publish_profile(ctx: Context, run: RunResult, path: Path, stream: taskstream.Collected | None = None) -> str:
    """The run's Dask performance report beside its report: ``reports/{run_id}.dask-profile.html``
    and ``latest/dask-profile.html``; with ``stream``, its task stream as
    ``reports/{run_id}.tasks.csv`` and ``latest/tasks.csv``."""
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    key = f"reports/{run.run_id}.dask-profile.html"
    ctx.store.put_bytes(bucket, key, Path(path).read_bytes())
    if stream is not None:
        ctx.store.put_bytes(bucket, f"reports/{run.run_id}.tasks.csv", taskstream.to_csv(stream.runs).encode("utf-8"))
    ctx.check_lease()
    ctx.store.copy(bucket, key, "latest/dask-profile.html")
    if stream is not None:
        ctx.store.copy(bucket, f"reports/{run.run_id}.tasks.csv", "latest/tasks.csv")
    return key


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def render_report(run: RunResult) -> str:
    assert run.hierarchy is not None
    m = run.hierarchy.metrics
    lines = [
        f"# landcoverpy run {run.run_id}",
        "",
        f"Preset: {run.preset or 'none'} (named bundle of settings; explicit settings override it).",
        "",
        "## Stages",
        "",
        "| stage | seconds | did work | detail |",
        "|---|---:|---|---|",
    ]
    for s in run.stages:
        lines.append(f"| {s.name} | {s.seconds:.1f} | {'yes' if s.did_work else 'no (reused)'} | {s.detail} |")
    if not any(s.name == "train" for s in run.stages):
        lines += ["", f"Model `{run.hierarchy.id}` given with --model: this run did not train it."]
    if run.dataset is not None:
        lines += [
            "",
            "## Training data",
            "",
            f"{run.dataset.n_points} {'polygon pixels' if m.category_per_polygon is not None else 'points'}, "
            f"{run.dataset.n_samples} samples "
            f"({run.dataset.neighbourhood}x{run.dataset.neighbourhood} neighbourhood), "
            f"{len(run.dataset.features)} features.",
        ]
    lines += [
        "",
        "## Spatial-block cross-validation (category model)",
        "",
        f"- overall accuracy {m.category.overall_accuracy:.3f}",
        f"- Cohen's kappa {m.category.kappa:.3f}",
        f"- macro F1 {m.category.macro_f1:.3f} (majority-class baseline {_num(m.category_baseline_macro_f1)})"
        + trees_note(run.hierarchy, None),
    ]
    if m.category_per_polygon is not None:
        pp = m.category_per_polygon
        lines.append(
            f"- per polygon ({pp.n} polygons, the class of most of each one's pixels): overall accuracy "
            f"{pp.overall_accuracy:.3f}, kappa {pp.kappa:.3f}, macro F1 {pp.macro_f1:.3f}"
        )
    for cat, f1 in m.subcategory.items():
        lines.append(f"- subcategory model [{cat}]: macro F1 {f1:.3f}" + trees_note(run.hierarchy, cat))
    if run.holdout and run.holdout.get("n"):
        h = run.holdout
        lines += [
            "",
            "## Held-out points (never used in training)",
            "",
            f"- {h['n']} points; category overall accuracy {h['category']['overall_accuracy']:.3f}, "
            f"kappa {h['category']['kappa']:.3f}",
        ]
        if h.get("subcategory"):
            lines.append(f"- subcategory overall accuracy {h['subcategory']['overall_accuracy']:.3f}")
        for level, est in (h.get("area") or {}).items():
            lines += [
                "",
                f"### Area estimates, {level} (Olofsson et al. 2014, 95 % CI)",
                "",
                f"- overall accuracy {_num(est['overall_accuracy'])} ± {_num(est['overall_accuracy_ci95'])}",
            ]
            lines += [
                f"- {name}: mapped {_num(c['mapped_area'], 2)} km2, estimated {_num(c['estimated_area'], 2)} "
                f"± {_num(c['estimated_area_ci95'], 2)} km2"
                for name, c in est["classes"].items()
            ]
    lines += ["", "## Class areas (km2)", ""]
    for tile, rec in run.maps.items():
        lines.append(f"### {tile}")
        lines += [f"- {name}: {area:.2f}" for name, area in rec.area_km2.items()]
    vectors = {tile: rec.vectors for tile, rec in run.maps.items() if rec.vectors}
    if vectors:
        lines += [
            "",
            "## Vector maps",
            "",
            "Polygons after the minimum mapping unit (VECTOR_OUTPUT), beside the maps:",
            "",
        ]
        for tile, objects in vectors.items():
            for name, obj in sorted(objects.items()):
                lines.append(f"- {tile} `{export_name(name, tile)}` ({obj.size or 0:,} bytes): {obj.bucket}/{obj.key}")
    if run.changes:
        lines += ["", f"## Change since {run.change_from}", ""]
        for rec in run.changes:
            got = change_summary(rec)
            lines += [
                f"### {rec.tile}, {rec.level} (`{rec.id}`, from map `{rec.sources[0]}` to `{rec.sources[1]}`)",
                "",
                f"The earlier map: {run.change_notes.get(rec.id, 'see its record')}.",
                "",
                f"{got.changed_ha:,.1f} ha changed class ({100 * got.changed_share:.1f} % of the area both maps "
                "cover). Largest changes:",
                "",
            ]
            lines += [f"- {n}: {ha:,.1f} ha" for n, ha in got.changed[:10]]
            lines.append("")
    return "\n".join(lines) + "\n"
