"""Lookups the stages need, computed with the same id rules the builders use.

"The composite of tile T and season S under these parameters" recomputes the composite id from
the products the catalog holds for T and S and the parameters; "the hierarchy trained on this
dataset with these parameters" recomputes the hierarchy id; "the maps of tile T made by
hierarchy H" is a catalog query. A stage never derives another stage's ids itself.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import Any

import joblib
import pandas as pd
import rasterio

from landcoverpy import records
from landcoverpy.assets import ids
from landcoverpy.assets.params import DEM_FEATURE_PREFIX, CompositeParams, ModelParams
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError, ModelError
from landcoverpy.inputs import LabelSet, Season
from landcoverpy.raster.ancillary import MOSAIC
from landcoverpy.raster.grid import Grid
from landcoverpy.records import (
    AbundanceDatasetRecord,
    AbundanceModelRecord,
    CompositeRecord,
    DatasetRecord,
    DemRecord,
    FeatureSource,
    HierarchyRecord,
    MapRecord,
    MemberRecord,
    ProductRecord,
    TrainingDatasetRecord,
)
from landcoverpy.sentinel2 import REFERENCE_BAND
from landcoverpy.storage import ObjectStore


def product_grid(store: ObjectStore, product: ProductRecord, band: str = REFERENCE_BAND) -> Grid:
    """The grid of one band of a catalogued product (10 m for the reference band)."""

    b = product.bands[band]
    with store.rasterio_env(), rasterio.open(store.raster_uri(b.bucket, b.key)) as src:
        return Grid.from_dataset(src)


def tile_grid(ctx: Context, tile: str) -> Grid | None:
    """The 10 m grid of a Sentinel-2 tile, from its composites or, before any, its products."""
    comps = records.find(ctx.catalog, CompositeRecord, {"tile": tile}, limit=1)
    if comps:
        return Grid.from_dict(comps[0].grid)
    products = records.find(ctx.catalog, ProductRecord, {"tile": tile}, limit=1)
    return product_grid(ctx.store, products[0]) if products else None


def products_for(ctx: Context, tile: str, season: Season, max_products: int) -> list[ProductRecord]:
    """Catalogued products of ``tile`` sensed within ``season``, best first (useful data, then
    sensing time, then id), at most ``max_products``: the inputs of its composite."""
    found = [
        r
        for r in records.find(ctx.catalog, ProductRecord, {"tile": tile})
        if season.contains(dt.datetime.fromisoformat(r.sensing_time))
    ]
    found.sort(key=lambda r: (-(r.useful_percentage or 0), r.sensing_time, r.id))
    return found[:max_products]


NEIGHBOURS_PER_SIDE = 3


def series_neighbours(ctx: Context, tile: str, season: Season, params: CompositeParams) -> list[ProductRecord]:
    """Catalogued products of ``tile`` sensed within ``params.series_margin`` days before or after
    ``season`` (an adjacent season's, typically), the nearest :data:`NEIGHBOURS_PER_SIDE` on each
    side, earliest first: the series layers' spike test compares the season's first and last clear
    dates with them, and a pixel without any valid observation in the season takes its NDVI
    samples (and, with ``gap_fill``, its medians) from them. None when ``series_margin`` is 0, or
    when nothing reads them (no samples, no gap filling, and no time-series features with spike
    removal)."""
    wanted = params.series_samples > 0 or params.gap_fill or (params.timeseries and params.series_spike > 0)
    if not (wanted and params.series_margin > 0):
        return []
    first = season.start - dt.timedelta(days=params.series_margin)
    last = season.end + dt.timedelta(days=params.series_margin)
    before: list[ProductRecord] = []
    after: list[ProductRecord] = []
    for r in records.find(ctx.catalog, ProductRecord, {"tile": tile}):
        day = dt.datetime.fromisoformat(r.sensing_time).date()
        if first <= day < season.start:
            before.append(r)
        elif season.end < day <= last:
            after.append(r)
    before.sort(key=lambda r: (r.sensing_time, r.id))
    after.sort(key=lambda r: (r.sensing_time, r.id))
    return before[-NEIGHBOURS_PER_SIDE:] + after[:NEIGHBOURS_PER_SIDE]


def composite_inputs(
    ctx: Context, tile: str, season: Season, params: CompositeParams
) -> tuple[str | None, list[ProductRecord], list[ProductRecord]]:
    """The id the composite of ``tile`` x ``season`` has under ``params`` given the catalogued
    products (None without products), its products and its series neighbours."""
    products = products_for(ctx, tile, season, params.max_products)
    if not products:
        return None, [], []
    neighbours = series_neighbours(ctx, tile, season, params)
    return composite_id_of(tile, season, products, params, neighbours), products, neighbours


def composite_id_of(
    tile: str,
    season: Season,
    products: list[ProductRecord],
    params: CompositeParams,
    neighbours: list[ProductRecord] | None = None,
) -> str:
    """The id of the composite made of these product records (what each holds: whole, or the
    window an area of interest had fetched)."""
    return ids.composite_id(
        tile,
        season,
        [ids.product_content_id(p) for p in products],
        params,
        [ids.product_content_id(n) for n in neighbours or ()],
    )


def composite_id_for(
    ctx: Context, tile: str, season: Season, params: CompositeParams
) -> tuple[str | None, list[ProductRecord]]:
    """:func:`composite_inputs` without the neighbours."""
    cid, products, _ = composite_inputs(ctx, tile, season, params)
    return cid, products


def composite_for(ctx: Context, tile: str, season: Season, params: CompositeParams) -> CompositeRecord | None:
    cid, _ = composite_id_for(ctx, tile, season, params)
    return records.load(ctx.catalog, CompositeRecord, cid) if cid else None


def dem_for(ctx: Context, tile: str, grid: Grid | None = None) -> DemRecord | None:
    """The newest DEM layers of ``tile`` (on ``grid`` when given)."""
    for rec in records.find(ctx.catalog, DemRecord, {"tile": tile}, [("created", -1)]):
        if grid is None or Grid.from_dict(rec.grid).same_as(grid):
            return rec
    return None


DEM_LAYER_ORDER = ("elevation", "slope", "aspect")


def dem_as_source(dem: DemRecord) -> FeatureSource:
    """The DEM layers as a feature source, read like a composite's (in the canonical order
    elevation, slope, aspect)."""
    return FeatureSource(
        id=dem.id,
        tile=dem.tile,
        grid=dem.grid,
        indices=dem.layers,
        params={"bands": [], "indices": list(DEM_LAYER_ORDER)},
    )


@dataclass
class FeatureSources:
    """The feature sources of one tile: each season's composite (by exact season name) and the
    DEM layers (under :data:`DEM_FEATURE_PREFIX`) when wanted; ``missing`` says what is absent."""

    tile: str
    sources: dict[str, FeatureSource] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def ids(self) -> list[str]:
        return [rec.id for rec in self.sources.values()]


def feature_sources(
    ctx: Context, tile: str, seasons: list[Season], params: CompositeParams, with_dem: bool
) -> FeatureSources:
    out = FeatureSources(tile)
    for season in seasons:
        cid, products = composite_id_for(ctx, tile, season, params)
        rec = records.load(ctx.catalog, CompositeRecord, cid) if cid else None
        if rec is None:
            out.missing.append(f"composite {season.name!r}" + ("" if products else " (no products)"))
        else:
            out.sources[season.name] = rec.as_source()
    if with_dem:
        grid = next(iter(out.sources.values())).pixel_grid if out.sources else None
        dem = dem_for(ctx, tile, grid)
        if dem is None:
            out.missing.append("DEM layers")
        else:
            out.sources[DEM_FEATURE_PREFIX] = dem_as_source(dem)
    return out


def model_uses_dem(features: list[str]) -> bool:
    return any(f.startswith(f"{DEM_FEATURE_PREFIX}_") for f in features)


# Training datasets
@dataclass
class DatasetPlan:
    """The training dataset the points and parameters identify: the feature sources of every
    tile with points (tiles missing a source are skipped and said why) and the dataset id."""

    per_tile: dict[str, dict[str, FeatureSource]]
    skipped: dict[str, str]
    dataset_id: str | None

    @property
    def source_ids(self) -> list[str]:
        return [rec.id for comps in self.per_tile.values() for rec in comps.values()]


def dataset_plan(
    ctx: Context,
    points: pd.DataFrame,
    seasons: list[Season],
    params: CompositeParams,
    with_dem: bool,
    neighbourhood: int,
) -> DatasetPlan:
    """``points`` carries a ``tile`` column (as validated inputs do)."""
    per_tile: dict[str, dict[str, FeatureSource]] = {}
    skipped: dict[str, str] = {}
    for tile in sorted(points["tile"].unique()):
        found = feature_sources(ctx, tile, seasons, params, with_dem)
        if found.complete:
            per_tile[tile] = found.sources
        else:
            n = int((points["tile"] == tile).sum())
            skipped[tile] = f"{n} point(s) skipped: missing {', '.join(found.missing)}"
    plan = DatasetPlan(per_tile, skipped, None)
    if per_tile:
        plan.dataset_id = ids.dataset_id(points, plan.source_ids, neighbourhood)
    return plan


def dataset(ctx: Context, dataset_id: str) -> TrainingDatasetRecord | None:
    return records.load(ctx.catalog, TrainingDatasetRecord, dataset_id)


def load_table(ctx: Context, record: DatasetRecord) -> pd.DataFrame:
    with ctx.store.open(record.bucket, record.key) as fh:
        return pd.read_parquet(io.BytesIO(fh.read()))


# Models
HIERARCHIES: dict[str, Any] = {"level": "hierarchy"}


def hierarchy_for(
    ctx: Context, dataset_id: str, params: ModelParams, lc: LabelSet, sl: LabelSet, subcategories: bool
) -> tuple[str, HierarchyRecord | None]:
    """The id of the hierarchy trained on ``dataset_id`` with ``params`` and its record (None
    when not trained yet)."""
    hid = ids.hierarchy_id(dataset_id, params, lc.values, sl.values, subcategories)
    return hid, records.load(ctx.catalog, HierarchyRecord, hid)


def hierarchies(ctx: Context, query: dict[str, Any] | None = None, limit: int | None = None) -> list[HierarchyRecord]:
    """Trained hierarchies (matching ``query``), newest first."""
    return records.find(ctx.catalog, HierarchyRecord, HIERARCHIES | (query or {}), [("created", -1)], limit)


def hierarchy(ctx: Context, hierarchy_id: str) -> HierarchyRecord:
    doc = ctx.catalog.get(HierarchyRecord.COLLECTION, hierarchy_id)
    if doc is None or doc.get("level") != "hierarchy":
        known = [r.id for r in hierarchies(ctx, limit=5)]
        raise ModelError(
            f"no trained hierarchy {hierarchy_id!r} in the catalog"
            + (f"; the newest are {', '.join(known)}" if known else "; run `landcoverpy train` first")
        )
    return records.from_doc(HierarchyRecord, doc)


def hierarchy_for_inputs(
    ctx: Context,
    points: pd.DataFrame,
    seasons: list[Season],
    lc: LabelSet,
    sl: LabelSet,
    composite: CompositeParams,
    model: ModelParams,
    with_dem: bool,
    neighbourhood: int,
    subcategories: bool,
) -> HierarchyRecord:
    """The hierarchy that `train` makes from these points and settings, or a ModelError saying
    which step is missing."""
    plan = dataset_plan(ctx, points, seasons, composite, with_dem, neighbourhood)
    if plan.dataset_id is None or dataset(ctx, plan.dataset_id) is None:
        raise ModelError(
            "no training dataset for these points under the current settings (composites: "
            f"{'; '.join(f'{t}: {w}' for t, w in plan.skipped.items()) or 'present'}); run `landcoverpy train` "
            "(or `landcoverpy run`) with these settings, or pass --model ID"
        )
    _, rec = hierarchy_for(ctx, plan.dataset_id, model, lc, sl, subcategories)
    if rec is None:
        known = [f"{r.id} ({r.model_type})" for r in hierarchies(ctx, {"dataset_id": plan.dataset_id})]
        raise ModelError(
            f"no model trained on dataset {plan.dataset_id} with MODEL_TYPE={model.model_type}, N_ESTIMATORS="
            f"{model.n_estimators}, MAX_DEPTH={model.max_depth}, TREE_TOLERANCE={model.tree_tolerance}, "
            f"RANDOM_SEED={model.seed}; run `landcoverpy train` "
            "or pass --model ID" + (f" (trained on it: {', '.join(known)})" if known else "")
        )
    return rec


def hierarchy_for_settings(ctx: Context, composite: CompositeParams, model: ModelParams) -> HierarchyRecord:
    """Without the training points: the newest hierarchy trained with these model and composite
    parameters, else the newest of all (classification then follows that model's record)."""
    found = hierarchies(ctx)
    if not found:
        raise ModelError("no trained models in the catalog: run `landcoverpy train` (or `run`) first")
    for rec in found:
        same_model = rec.params == model.to_dict()
        same_composites = CompositeParams.from_dict(rec.composite_params or {}).identity() == composite.identity()
        if same_model and same_composites:
            return rec
    return found[0]


def model_seasons(hierarchy: HierarchyRecord) -> list[Season]:
    """The seasons (names and dates) a hierarchy was trained on, from its record."""
    if not hierarchy.season_defs:
        raise ModelError(
            f"model {hierarchy.id} does not record its seasons (trained by an older version); "
            "pass --seasons with the seasons it was trained on, or retrain"
        )
    return [
        Season(name, dt.date.fromisoformat(start), dt.date.fromisoformat(end))
        for name, start, end in hierarchy.season_defs
    ]


def model_training_tiles(ctx: Context, hierarchy: HierarchyRecord) -> list[str]:
    rec = dataset(ctx, hierarchy.dataset_id or "")
    return sorted(rec.tiles) if rec else []


def latest_hierarchy(ctx: Context) -> HierarchyRecord:
    found = hierarchies(ctx, limit=1)
    if not found:
        raise ModelError("no trained models in the catalog: run `landcoverpy train` first")
    return found[0]


def member(ctx: Context, model_id: str) -> MemberRecord:
    rec = records.load(ctx.catalog, MemberRecord, model_id)
    if rec is None:
        raise ModelError(f"model {model_id} is in the hierarchy but not in the catalog")
    return rec


def load_estimator(ctx: Context, model_id: str) -> tuple[Any, MemberRecord]:
    """A member model's estimator (one thread: the Dask cluster gives the parallelism)."""

    rec = member(ctx, model_id)
    with ctx.store.open(rec.bucket, rec.key) as fh:
        est = joblib.load(io.BytesIO(fh.read()))
    if hasattr(est, "n_jobs"):
        est.set_params(n_jobs=1)
    return est, rec


# Maps
def maps_of(ctx: Context, tile: str | None = None, hierarchy_id: str | None = None) -> list[MapRecord]:
    """The classification maps (of ``tile``, made by ``hierarchy_id`` when given), most recently
    used first."""
    query: dict[str, Any] = {"kind": "classification"}
    if tile:
        query["tile"] = tile
    if hierarchy_id:
        query["hierarchy"] = hierarchy_id
    recs = records.find(ctx.catalog, MapRecord, query)
    return sorted(recs, key=lambda r: r.last_used or r.created or "", reverse=True)


# Abundance
def abundance_dataset(ctx: Context, dataset_id: str | None = None) -> AbundanceDatasetRecord | None:
    if dataset_id:
        return records.load(ctx.catalog, AbundanceDatasetRecord, dataset_id)
    found = records.find(ctx.catalog, AbundanceDatasetRecord, {"kind": "abundance"}, [("created", -1)], 1)
    return found[0] if found else None


def abundance_model(ctx: Context, level: str, model_id: str | None = None) -> AbundanceModelRecord | None:
    """The model ``model_id``, or the newest that estimates ``level``: a model of both levels
    (``abundance-both``) serves N1 and N2 too."""
    if model_id:
        return records.load(ctx.catalog, AbundanceModelRecord, model_id)
    wanted = [f"abundance-{level}"] + (["abundance-both"] if level in ("N1", "N2") else [])
    found = records.find(ctx.catalog, AbundanceModelRecord, {"level": {"$in": wanted}}, [("created", -1)], 1)
    return found[0] if found else None


def dem_ancillary_sources(ctx: Context) -> dict[str, str]:
    """Altitude and slope for abundance ancillaries: the newest DEM layers of every tile in the
    catalog, as mosaic sources (:mod:`landcoverpy.raster.ancillary`) read onto any grid."""

    newest: dict[str, DemRecord] = {}
    for rec in records.find(ctx.catalog, DemRecord, {}, [("created", -1)]):
        newest.setdefault(rec.tile, rec)
    if not newest:
        raise InputValidationError(
            "--dem-ancillary: the catalog has no DEM layers; run `landcoverpy dem --tile ...` "
            "for the Sentinel-2 tiles under the MODIS grid first"
        )
    out = {}
    for name, layer in (("altitude", "elevation"), ("slope", "slope")):
        uris = [
            ctx.store.raster_uri(r.layers[layer].bucket, r.layers[layer].key)
            for r in newest.values()
            if layer in r.layers
        ]
        out[name] = MOSAIC + json.dumps(uris)
    return out
