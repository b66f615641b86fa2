"""What each command does, once: the sequences behind ``run`` and ``classify`` (stages, publishing,
export), shared by the command line (``cli.py`` parses and prints) and the Python API
(``api.py``). Each returns a typed outcome; nothing here prints."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from landcoverpy import records
from landcoverpy.assets import lookup
from landcoverpy.assets.params import CompositeParams, ModelParams
from landcoverpy.assets.stac import publish_catalog, write_catalog
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError
from landcoverpy.inputs import Inputs, LabelledPoints, Season
from landcoverpy.pipeline import taskstream
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
    record = build_mosaic(ctx, aoi, {t: r for t, r in maps.items() if t in wanted}, aoi_crs)
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
) -> RunOutcome:
    """Every stage (acquire, composite, DEM, dataset, train, classify), then the STAC catalog, the
    report, the map page and, with ``output_dir``, the export; with ``aoi`` the area's mosaic."""
    cfg = ctx.settings
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
                    client, cfg, lambda: run_workflow(ctx, inputs, provider, client, tiles, holdout, progress, aoi)
                )
        if profile_path is not None:
            profile_key = publish_profile(ctx, result, profile_path, stream)
            if output_dir is not None:
                output_dir.mkdir(parents=True, exist_ok=True)
                exported["dask-profile"] = Path(shutil.copyfile(profile_path, output_dir / "dask-profile.html"))
                if stream is not None:
                    (output_dir / "tasks.csv").write_text(taskstream.to_csv(stream.runs), encoding="utf-8")
                    exported["tasks"] = output_dir / "tasks.csv"
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
