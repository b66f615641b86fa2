"""Stage 3: the training dataset. Sample every season's composite at the labelled points, one
Dask task per tile, merge, store as Parquet in the datasets bucket and catalogue it."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from landcoverpy.pipeline.tasks import dask_task, task_key
from landcoverpy import __version__
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError, LandcoverError, RasterError
from landcoverpy.features import FeatureReader, feature_names, sample_points
from landcoverpy.inputs import Inputs, Season
from landcoverpy.pipeline.composites import latest_composite
from landcoverpy.sentinel2 import tile_of
from landcoverpy.storage import join_key, open_store

log = logging.getLogger(__name__)


def assign_tiles(points: pd.DataFrame, source: str = "dataset") -> pd.Series:
    """The Sentinel-2 tile of every point; points outside the tiling are errors naming their rows."""
    tiles, problems = [], []
    for idx, (la, lo) in enumerate(zip(points["latitude"], points["longitude"])):
        try:
            tiles.append(tile_of(la, lo))
        except InputValidationError as exc:
            problems.append(f"row {idx + 2}: {exc}")
            tiles.append("")
    if problems:
        raise InputValidationError(f"{source}: " + "; ".join(problems[:10])
                                   + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))
    return pd.Series(tiles, index=points.index, name="tile")


DEM_KEY = "dem"  # feature prefix of the terrain layers (a reserved season name)


def tile_composites(ctx: Context, tile: str, seasons: list[Season], with_dem: bool | None = None) -> dict[str, dict[str, Any]] | None:
    """The feature sources of a tile: each season's composite, plus the DEM layers (elevation,
    slope, aspect) when ``with_dem`` (default: when DEM_SOURCE is set). None if any is missing."""
    out = {}
    for season in seasons:
        rec = latest_composite(ctx, tile, season)
        if rec is None:
            return None
        out[season.name] = rec
    if with_dem if with_dem is not None else bool(ctx.settings.DEM_SOURCE):
        dems = ctx.catalog.find("dems", {"tile": tile}, sort=[("created", -1)], limit=1)
        if not dems:
            return None
        dem = dems[0]
        out[DEM_KEY] = {"_id": dem["_id"], "tile": tile, "grid": dem["grid"], "bands": {}, "indices": dem["layers"]}
    return out


@dask_task
def sample_tile(settings: Settings, composites: dict[str, dict[str, Any]], points: pd.DataFrame,
                neighbourhood: int) -> pd.DataFrame:
    """Dask task: features of the points of one tile."""
    store = open_store(settings, check=False)
    features = feature_names(composites)
    with FeatureReader(store, composites, features) as reader:
        table = sample_points(reader, points, neighbourhood)
    table["tile"] = next(iter(composites.values()))["tile"]
    return table


def dataset_id(points: pd.DataFrame, composite_ids: list[str], neighbourhood: int) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(points[["latitude", "longitude", "category", "subcategory"]], index=False).values.tobytes())
    h.update(json.dumps({"composites": sorted(composite_ids), "neighbourhood": neighbourhood, "format": 1}).encode())
    return f"dataset-{h.hexdigest()[:16]}"


@dataclass
class DatasetResult:
    record: dict[str, Any]
    reused: bool
    skipped_tiles: dict[str, str] = field(default_factory=dict)


def build_dataset(ctx: Context, inputs: Inputs, client: Any, neighbourhood: int | None = None) -> DatasetResult:
    neighbourhood = neighbourhood or ctx.settings.NEIGHBOURHOOD
    points = inputs.points.frame.copy()
    points["tile"] = assign_tiles(points, inputs.points.source)
    per_tile: dict[str, dict[str, dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for tile in sorted(points["tile"].unique()):
        comps = tile_composites(ctx, tile, inputs.seasons)
        if comps is None:
            n = int((points["tile"] == tile).sum())
            skipped[tile] = (f"{n} point(s) skipped: no composite for every season (run acquire + composite)"
                             + (", or no DEM (run dem)" if ctx.settings.DEM_SOURCE else ""))
            log.warning("tile %s: %s", tile, skipped[tile])
            continue
        per_tile[tile] = comps
    if not per_tile:
        raise InputValidationError(
            f"{inputs.points.source}: none of the points' tiles ({', '.join(sorted(points['tile'].unique()))}) "
            "has composites for every season; run `landcoverpy acquire` and `landcoverpy composite` first"
        )
    feature_sets = {tile: feature_names(c) for tile, c in per_tile.items()}
    reference = next(iter(feature_sets.values()))
    for tile, feats in feature_sets.items():
        if feats != reference:
            raise RasterError(f"tile {tile} composites have different layers from the other tiles")
    comp_ids = [rec["_id"] for comps in per_tile.values() for rec in comps.values()]
    did = dataset_id(points, comp_ids, neighbourhood)
    existing = ctx.catalog.get("datasets", did)
    if existing is not None:
        log.info("dataset %s already built, reused", did)
        return DatasetResult(existing, True, skipped)
    futures = {client.submit(sample_tile, ctx.settings, comps, points[points["tile"] == tile], neighbourhood,
                             key=task_key(f"sample-{did}-{tile}"), pure=False): tile for tile, comps in per_tile.items()}
    tables = []
    for fut, tile in futures.items():
        try:
            tables.append(fut.result())
        except LandcoverError as exc:
            skipped[tile] = str(exc)
            log.error("tile %s: %s", tile, exc)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    sampled_points = set(table["point_id"]) if not table.empty else set()
    considered = points[points["tile"].isin(per_tile)]
    dropped = [int(i) for i in considered.index if i not in sampled_points]
    if dropped:
        log.warning("%d point(s) outside their tile's composites or without valid data: rows %s",
                    len(dropped), ", ".join(str(i + 2) for i in dropped[:20]))
    if table.empty:
        raise InputValidationError(f"{inputs.points.source}: no point could be sampled (all outside the composites or cloudy)")
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    table_hash = hashlib.sha256(buf.getvalue()).hexdigest()
    bucket = ctx.settings.MINIO_BUCKET_DATASETS
    key = join_key("datasets", f"{did}.parquet")
    buf.seek(0)
    ctx.store.put_stream(bucket, key, buf)
    record = {
        "_id": did,
        "bucket": bucket,
        "key": key,
        "features": reference,
        "seasons": [s.name for s in inputs.seasons],
        "composites": comp_ids,
        "tiles": sorted(per_tile),
        "neighbourhood": neighbourhood,
        "n_points": int(len(sampled_points)),
        "n_samples": int(len(table)),
        "dropped_points": dropped,
        "class_counts": {k: int(v) for k, v in table.drop_duplicates("point_id")["category"].value_counts().items()},
        "subclass_counts": {k: int(v) for k, v in table.drop_duplicates("point_id")["subcategory"].value_counts().items()},
        "table_sha256": table_hash,
        "source": inputs.points.source,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": __version__,
    }
    ctx.catalog.upsert("datasets", record)
    log.info("dataset %s: %d samples from %d points, %d features", did, len(table), len(sampled_points), len(reference))
    return DatasetResult(record, False, skipped)


def load_table(ctx: Context, record: dict[str, Any]) -> pd.DataFrame:
    with ctx.store.open(record["bucket"], record["key"]) as fh:
        return pd.read_parquet(io.BytesIO(fh.read()))
