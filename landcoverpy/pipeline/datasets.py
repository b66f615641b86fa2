"""Stage 3: the training dataset. Sample every season's composite at the labelled points, one
Dask task per tile, merge, store as Parquet in the datasets bucket and catalogue it."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from distributed import as_completed

from landcoverpy import __version__, records
from landcoverpy.assets import ids, integrity, keys, lookup
from landcoverpy.assets.params import CompositeParams
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import RUN_STOPPERS, InputValidationError, LandcoverError, RasterError
from landcoverpy.features import FeatureReader, feature_names, sample_points
from landcoverpy.inputs import Inputs
from landcoverpy.pipeline.tasks import dask_task, releases_workers, task_key
from landcoverpy.progress import step
from landcoverpy.records import FeatureSource, TrainingDatasetRecord
from landcoverpy.storage import open_store

log = logging.getLogger(__name__)


@dask_task
def sample_tile(
    settings: Settings, composites: dict[str, FeatureSource], points: pd.DataFrame, neighbourhood: int
) -> pd.DataFrame:
    """Dask task: features of the points of one tile."""
    store = open_store(settings, check=False)
    features = feature_names(composites)
    with FeatureReader(store, composites, features) as reader:
        table = sample_points(reader, points, neighbourhood)
    table["tile"] = next(iter(composites.values())).tile
    return table


@dataclass
class DatasetResult:
    record: TrainingDatasetRecord
    reused: bool
    skipped_tiles: dict[str, str] = field(default_factory=dict)


@releases_workers
def build_dataset(
    ctx: Context,
    inputs: Inputs,
    client: Any,
    neighbourhood: int | None = None,
    params: CompositeParams | None = None,
    with_dem: bool | None = None,
    progress: bool = False,
) -> DatasetResult:
    """Sample the feature sources of every tile with points (the composites made under
    ``params``, default from the settings, plus the DEM layers when ``with_dem``, default when
    DEM_SOURCE names a source) into one training table, or reuse the one already catalogued."""
    points = inputs.points.frame
    # a labelled polygon's pixels are its samples; a point gets the window around it
    neighbourhood = 1 if "polygon_id" in points else (neighbourhood or ctx.settings.NEIGHBOURHOOD)
    params = params or CompositeParams.from_settings(ctx.settings)
    with_dem = ctx.settings.uses_dem if with_dem is None else with_dem
    plan = lookup.dataset_plan(ctx, points, inputs.seasons, params, with_dem, neighbourhood)
    per_tile, skipped = plan.per_tile, dict(plan.skipped)
    for tile, why in skipped.items():
        log.warning("tile %s: %s", tile, why)
    if not per_tile or plan.dataset_id is None:
        raise InputValidationError(
            f"{inputs.points.source}: none of the points' tiles has every feature source under the current "
            f"settings ({'; '.join(f'{t}: {why}' for t, why in skipped.items())}); build them with "
            "`landcoverpy acquire`, `landcoverpy composite`"
            + (" and `landcoverpy dem`" if with_dem else "")
            + " (or `landcoverpy run`) with the same settings"
        )
    feature_sets = {tile: feature_names(c) for tile, c in per_tile.items()}
    reference = next(iter(feature_sets.values()))
    for tile, feats in feature_sets.items():
        if feats != reference:
            raise RasterError(f"tile {tile} composites have different layers from the other tiles")
    comp_ids, did = plan.source_ids, plan.dataset_id
    existing = records.load(ctx.catalog, TrainingDatasetRecord, did)
    if existing is not None and integrity.reusable(ctx, existing):
        log.info("dataset %s already built, reused", did)
        return DatasetResult(existing, True, skipped)
    futures = {
        client.submit(
            sample_tile,
            ctx.settings,
            comps,
            points[points["tile"] == tile],
            neighbourhood,
            key=task_key(f"sample-{did}-{tile}"),
            pure=False,
        ): tile
        for tile, comps in per_tile.items()
    }
    tables = []

    with step(log, "dataset: sampling the points", len(futures), "tile", progress) as bar:
        for fut in as_completed(list(futures)):
            tile = futures[fut]
            try:
                tables.append(fut.result())
            except RUN_STOPPERS:  # an outage past OUTAGE_TOLERANCE, a full disk: no other tile can pass
                raise
            except LandcoverError as exc:
                skipped[tile] = str(exc)
                log.error("tile %s: %s", tile, exc)
            bar.update(1)
    tables.sort(key=lambda t: str(t["tile"].iloc[0]) if len(t) else "")  # the table does not depend on timing
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    sampled_points = set(table["point_id"]) if not table.empty else set()
    considered = points[points["tile"].isin(per_tile)]
    dropped = [int(i) for i in considered.index if i not in sampled_points]
    if dropped:
        log.warning(
            "%d point(s) outside their tile's composites or without valid data: rows %s",
            len(dropped),
            ", ".join(str(i + 2) for i in dropped[:20]),
        )
    if table.empty:
        raise InputValidationError(
            f"{inputs.points.source}: no point could be sampled (all outside the composites or cloudy)"
        )
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    table_hash = hashlib.sha256(buf.getvalue()).hexdigest()
    bucket = ctx.settings.MINIO_BUCKET_DATASETS
    key = keys.dataset_key(did)
    ctx.store.put_bytes(bucket, key, buf.getvalue())
    record = TrainingDatasetRecord(
        id=did,
        bucket=bucket,
        key=key,
        features=reference,
        seasons=[s.name for s in inputs.seasons],
        composites=comp_ids,
        composite_params=params.to_dict(),
        season_defs=[ids.season_identity(s) for s in inputs.seasons],
        with_dem=with_dem,
        size=len(buf.getvalue()),
        tiles=sorted(per_tile),
        neighbourhood=neighbourhood,
        n_points=int(len(sampled_points)),
        n_samples=int(len(table)),
        dropped_points=dropped,
        class_counts={k: int(v) for k, v in table.drop_duplicates("point_id")["category"].value_counts().items()},
        subclass_counts={k: int(v) for k, v in table.drop_duplicates("point_id")["subcategory"].value_counts().items()},
        table_sha256=table_hash,
        source=inputs.points.source,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        code_version=__version__,
    )
    stored = records.store(ctx.catalog, record)
    log.info("dataset %s: %d samples from %d points, %d features", did, len(table), len(sampled_points), len(reference))
    return DatasetResult(stored, False, skipped)
