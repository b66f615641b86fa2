"""Stage 2: cloud-masked seasonal median composites and spectral indices, window by window.

For each tile x season: the products chosen at acquisition are masked (L2A: SCL classes; L1C:
s2cloudless), nodata becomes NaN, the processing-baseline offset is applied, 20/60 m bands are
brought onto the 10 m grid, and the per-pixel median is computed one window at a time. Peak memory
is (products x window^2), never the tile size. Outputs are COGs plus a catalog record whose id is
derived from the inputs and parameters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from distributed import as_completed
from rasterio.enums import Resampling
from s2cloudless import S2PixelCloudDetector

from landcoverpy import __version__, records
from landcoverpy.assets import ids, integrity, keys, lookup, publish
from landcoverpy.assets.params import CompositeParams
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import RUN_STOPPERS, LandcoverError, RasterError
from landcoverpy.inputs import Season
from landcoverpy.pipeline.tasks import dask_task, releases_workers, task_key
from landcoverpy.progress import step
from landcoverpy.raster import masks
from landcoverpy.raster.cog import CogWriter, write_cog
from landcoverpy.raster.composite import median_composite, percentile_composite, valid_count
from landcoverpy.raster.grid import Grid, block_windows, common_extent
from landcoverpy.raster.indices import INDICES, compute_index
from landcoverpy.raster.pixelkernels import as_2d, dequantise_into, quantise_into
from landcoverpy.raster.reading import GDAL_CACHE_MB, GridReader, expand_window
from landcoverpy.raster.timeseries import FEATURES as SERIES_FEATURES
from landcoverpy.raster.timeseries import drop_spikes, sample_days, sample_layers, season_samples, series_features
from landcoverpy.records import ProductRecord
from landcoverpy.scratch import scratch_dir
from landcoverpy.sentinel2 import dn_to_reflectance, masked_reflectance
from landcoverpy.storage import ObjectStore, open_store

log = logging.getLogger(__name__)

S2CLOUDLESS_BANDS = ["B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12"]
BAND_SCALE = 10000.0  # composite bands are stored as uint16 reflectance x 10000, 0 = nodata


def common_grid(store: ObjectStore, products: list[ProductRecord]) -> Grid:
    """The 10 m grid of the products. Whole products must share one grid; products acquired for
    an area of interest hold windows of it, and the composite covers the part every product holds.
    RasterError naming two products when they are not on one grid."""
    grids = {p.id: lookup.product_grid(store, p) for p in products}
    whole = [pid for pid, p in zip(grids, products) if not p.window]
    ref_id = whole[0] if whole else next(iter(grids))
    ref = grids[ref_id]
    if all(grid.same_as(ref) for grid in grids.values()):
        return ref
    other = next((pid for pid in whole if not grids[pid].same_as(ref)), None)
    common = common_extent(list(grids.values())) if other is None else None
    if common is None:
        pid = other or next(pid for pid, g in grids.items() if not g.same_as(ref))
        grid = grids[pid]
        raise RasterError(
            f"products of one tile are on different grids: {ref_id} ({ref.crs}, {ref.width}x{ref.height}, "
            f"origin {ref.transform[2]:.0f},{ref.transform[5]:.0f}) vs {pid} ({grid.crs}, {grid.width}x"
            f"{grid.height}, origin {grid.transform[2]:.0f},{grid.transform[5]:.0f})"
        )
    return common


def s2cloudless_mask_key(product: ProductRecord, mask: masks.MaskSettings) -> str:
    return keys.cloud_mask_key(
        product.tile,
        ids.product_content_id(product),
        mask.cloud_probability_threshold,
        mask.cloudless_average_over,
        mask.cloudless_dilation,
    )


def ensure_s2cloudless_mask(
    settings: Settings, store: ObjectStore, product: ProductRecord, mask: masks.MaskSettings
) -> tuple[str, str]:
    """Cloud mask of an L1C product by s2cloudless on its 60 m grid (1 = cloud), stored as a COG
    and reused when present. A 60 m tile is at most 1830 x 1830 pixels, whatever the products."""

    bucket = settings.MINIO_BUCKET_NAME_COMPOSITES
    key = s2cloudless_mask_key(product, mask)
    if store.exists(bucket, key):
        return bucket, key
    grid60 = lookup.product_grid(store, product, "B01")
    layers = []
    with store.rasterio_env():
        for band in S2CLOUDLESS_BANDS:
            b = product.bands[band]
            reader = GridReader(store.raster_uri(b.bucket, b.key), grid60, Resampling.average)
            try:
                dn = reader.read(rasterio.windows.Window(0, 0, grid60.width, grid60.height))
            finally:
                reader.close()
            layers.append(dn_to_reflectance(dn, product.offsets.get(band, 0.0)))
    data = np.stack(layers, axis=-1)
    nodata = np.isnan(data).any(axis=-1)
    data = np.nan_to_num(data, nan=0.0)
    detector = S2PixelCloudDetector(
        threshold=mask.cloud_probability_threshold,
        average_over=mask.cloudless_average_over,
        dilation_size=mask.cloudless_dilation,
        all_bands=False,
    )
    cloud = detector.get_cloud_masks(data[np.newaxis])[0].astype("uint8")
    cloud[nodata] = 1
    with scratch_dir(settings.TMP_DIR) as tmp:
        path = tmp / "mask.tif"
        write_cog(
            path,
            cloud,
            grid60,
            nodata=None,
            descriptions=["s2cloudless cloud mask (1 = cloud)"],
            tags={"cloud_percentage": f"{100 * cloud.mean():.2f}"},
        )
        store.put_file(bucket, key, path)
    log.info("%s: s2cloudless cloud cover %.1f%%", product.id, 100 * cloud.mean())
    return bucket, key


class ProductWindowReader:
    """Reads, for one product, masked reflectance windows of any band on the 10 m grid."""

    def __init__(
        self, store: ObjectStore, product: ProductRecord, grid: Grid, mask_uri: str | None, mask: masks.MaskSettings
    ) -> None:
        self.product, self.grid, self.mask = product, grid, mask
        self.readers: dict[str, GridReader] = {}
        self.store = store
        if product.level == "L2A":
            scl = product.bands["SCL"]
            self.mask_reader = GridReader(store.raster_uri(scl.bucket, scl.key), grid)
        else:
            assert mask_uri is not None
            self.mask_reader = GridReader(mask_uri, grid)

    def invalid(self, window: rasterio.windows.Window) -> np.ndarray:
        halo = self.mask.dilation_pixels
        grown, (rs, cs) = expand_window(window, halo, self.grid)
        if self.product.level == "L2A" and self.mask_reader.dtype == np.uint8:
            m = self.mask_reader.read(grown, lookup=masks.scl_table(self.mask.scl_classes))
        else:
            raw = self.mask_reader.read(grown)
            m = masks.scl_mask(raw, self.mask.scl_classes) if self.product.level == "L2A" else raw.astype(bool)
        return masks.dilate(m, halo)[rs, cs]

    def reflectance(
        self, band: str, window: rasterio.windows.Window, invalid: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Reflectance of ``band`` in ``window``, NaN where ``invalid`` or no data (into ``out``,
        float32, when given)."""
        if band not in self.readers:
            b = self.product.bands[band]
            self.readers[band] = GridReader(self.store.raster_uri(b.bucket, b.key), self.grid)
        dn = self.readers[band].read(window)
        return masked_reflectance(dn, self.product.offsets.get(band, 0.0), invalid, out=out)

    def close(self) -> None:
        for r in self.readers.values():
            r.close()
        self.mask_reader.close()


def to_uint16_reflectance(refl: np.ndarray) -> np.ndarray:
    """Reflectance -> stored uint16 (x 10000, rounded half to even, clipped to 1..65535; 0 = NaN)."""

    out = np.empty(refl.shape, dtype="uint16")
    quantise_into(as_2d(refl), refl.dtype.type(BAND_SCALE), as_2d(out))
    return out


def _layer_profile(name: str, params: CompositeParams, tags: dict[str, str]) -> dict[str, Any]:
    if name in params.band_layers():
        what = f"{name.split('_p')[0]} {name.split('_p')[1]}th percentile" if "_p" in name else f"{name} median"
        return dict(
            dtype="uint16",
            nodata=0,
            overview_resampling="average",
            descriptions=[f"{what} reflectance x 10000"],
            tags=tags | {"scale_factor": str(1 / BAND_SCALE)},
            scales=[1 / BAND_SCALE],
            offsets=[0.0],
            units=["1"],
        )  # reflectance (dimensionless) once scaled
    if name == "valid_count":
        return dict(
            dtype="uint8",
            nodata=None,
            overview_resampling="nearest",
            descriptions=["number of valid observations"],
            tags=tags,
        )
    if name in SERIES_FEATURES:
        return dict(
            dtype="float32",
            nodata=float("nan"),
            overview_resampling="average",
            descriptions=[f"{name.replace('_', ' ')} over the season's valid dates"],
            tags=tags,
        )
    if name in params.series_layers():
        return dict(
            dtype="float32",
            nodata=float("nan"),
            overview_resampling="average",
            descriptions=[
                f"NDVI interpolated at sample {name.removeprefix('ndvi_t')} of "
                f"{params.series_samples} evenly spaced days of the season"
            ],
            tags=tags,
        )
    return dict(
        dtype="float32",
        nodata=float("nan"),
        overview_resampling="average",
        descriptions=[f"{name} index of the median composite"],
        tags=tags,
    )


class LayerWriter:
    """Writes some layers of one composite as COGs in a scratch folder, then uploads each with
    its completion record (``{layer}.done.json``: size, SHA-256, valid pixels). A layer whose
    completion record exists is complete: a killed run resumes without redoing it."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        tile: str,
        season: Season,
        cid: str,
        products: list[ProductRecord],
    ) -> None:
        self.settings, self.store, self.tile, self.season, self.cid = settings, store, tile, season, cid
        self.bucket = settings.MINIO_BUCKET_NAME_COMPOSITES
        self.tags = {
            "tile": tile,
            "season": season.name,
            "products": ",".join(p.id for p in products),
            "composite_id": cid,
        }

    def key(self, layer: str) -> str:
        return keys.composite_layer_key(self.tile, self.season.name, self.cid, layer)

    def done(self, layer: str) -> dict[str, Any] | None:
        done_key = keys.composite_layer_done_key(self.tile, self.season.name, self.cid, layer)
        if not self.store.exists(self.bucket, done_key):
            return None
        done = dict(self.store.get_json(self.bucket, done_key))
        if self.store.stat(self.bucket, self.key(layer)) != done.get("size"):
            return None  # the layer went missing or was cut short: made again
        return done

    def write(
        self,
        layers: list[str],
        grid: Grid,
        params: CompositeParams,
        fill: Callable[[dict[str, CogWriter]], dict[str, int]],
    ) -> dict[str, dict[str, Any]]:
        """Make ``layers`` with ``fill`` (which writes every window into the given writers and
        returns extra per-layer counts), upload them and their completion records."""
        with scratch_dir(self.settings.TMP_DIR) as tmp:
            paths = {name: tmp / f"{name}.tif" for name in layers}
            writers = {
                name: CogWriter(
                    paths[name], grid, tmp_dir=tmp, compress="ZSTD", **_layer_profile(name, params, self.tags)
                )
                for name in layers
            }
            with contextlib.ExitStack() as stack:  # a failure closes the writers without making COGs
                opened = {n: stack.enter_context(w) for n, w in writers.items()}
                extra = fill(opened)
            files = {}
            for name, path in paths.items():
                files[name] = publish.put_file(self.store, self.bucket, self.key(name), path)
                if name in extra:
                    files[name]["valid_pixels"] = extra[name]
                self.store.put_json(
                    self.bucket, keys.composite_layer_done_key(self.tile, self.season.name, self.cid, name), files[name]
                )
        return files


@dask_task
def build_cloud_mask(settings: Settings, product: ProductRecord, mask: masks.MaskSettings) -> str | None:
    """Dask task: the stored s2cloudless mask of an L1C product (None for L2A: SCL is used)."""
    if product.level != "L1C":
        return None
    store = open_store(settings, check=False)
    with store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        bucket, key = ensure_s2cloudless_mask(settings, store, product, mask)
    return store.raster_uri(bucket, key)


def _cid(
    tile: str,
    season: Season,
    products: list[ProductRecord],
    params: CompositeParams,
    neighbours: list[ProductRecord] | None,
) -> str:
    return lookup.composite_id_of(tile, season, products, params, neighbours)


@dask_task
def build_band(
    settings: Settings,
    tile: str,
    season: Season,
    products: list[ProductRecord],
    params: CompositeParams,
    band: str,
    mask_uris: dict[str, str | None],
    neighbours: list[ProductRecord] | None = None,
) -> dict[str, dict[str, Any]]:
    """Dask task: the median of one band over the products, window by window (and, for the first
    band, the valid-observation count); reused when already complete. ``neighbours``: the
    composite's neighbours (products just outside the season); with ``params.gap_fill`` a pixel
    without any valid observation in the season takes its median (and percentiles) from theirs,
    and keeps a valid count of 0 (the season itself saw nothing there); otherwise they enter the
    id only."""
    store = open_store(settings, check=False)
    cid = _cid(tile, season, products, params, neighbours)
    out = LayerWriter(settings, store, tile, season, cid, products)
    layers = params.band_layers(band) + (["valid_count"] if band == params.bands[0] else [])
    existing = {name: out.done(name) for name in layers}
    if all(existing.values()):
        return {name: dict(rec or {}) | {"reused": True} for name, rec in existing.items()}
    with store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        grid = common_grid(store, products)

        read = [*products, *(neighbours or [])] if params.gap_fill else products

        def open_readers() -> list[ProductWindowReader]:
            return [ProductWindowReader(store, p, grid, mask_uris.get(p.id), params.mask) for p in read]

        def compute(readers: list[ProductWindowReader], window: rasterio.windows.Window) -> dict[str, np.ndarray]:
            return band_window(
                readers,
                window,
                band,
                with_count="valid_count" in layers,
                percentiles=params.percentiles,
                own=len(products),
            )

        def fill(writers: dict[str, CogWriter]) -> dict[str, int]:
            valid = run_windows(
                open_readers, grid, params, compute, writers, lambda: store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB)
            )
            return {"valid_count": valid} if "valid_count" in writers else {}

        files = out.write(layers, grid, params, fill)
    return files


def index_groups(names: tuple[str, ...] | list[str]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Indices that need the same bands, as (bands, indices) pairs in the order first named: one
    task each, so an index group starts as soon as its own bands are done, the groups run side by
    side, and no band is read twice within a group."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        groups.setdefault(tuple(sorted(INDICES[name][1])), []).append(name)
    return [(needed, tuple(members)) for needed, members in groups.items()]


@dask_task
def build_indices(
    settings: Settings,
    tile: str,
    season: Season,
    products: list[ProductRecord],
    params: CompositeParams,
    bands: dict[str, dict[str, dict[str, Any]]],
    names: tuple[str, ...] | None = None,
    neighbours: list[ProductRecord] | None = None,
) -> dict[str, dict[str, Any]]:
    """Dask task: spectral indices (``names``, default every index of ``params``) from the stored
    (quantised) band medians, so training and prediction features agree; reused when already
    complete. ``bands``: the band tasks' results, at least those the indices need."""
    names = tuple(params.indices if names is None else names)
    store = open_store(settings, check=False)
    cid = _cid(tile, season, products, params, neighbours)
    out = LayerWriter(settings, store, tile, season, cid, products)
    existing = {name: out.done(name) for name in names}
    if all(existing.values()) or not names:
        return {name: dict(rec or {}) | {"reused": True} for name, rec in existing.items()}
    needed = {b for name in names for b in INDICES[name][1]}
    band_files = {b: files[b] for files in bands.values() for b in files if b in needed}
    with store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        grid = common_grid(store, products)

        def open_readers() -> list[Any]:
            return [GridReader(store.raster_uri(loc["bucket"], loc["key"]), grid) for loc in band_files.values()]

        def compute(readers: list[Any], window: rasterio.windows.Window) -> dict[str, np.ndarray]:
            medians = {b: dequantise(r.read(window)) for b, r in zip(band_files, readers)}
            return {name: compute_index(name, medians) for name in names}

        def fill(writers: dict[str, CogWriter]) -> dict[str, int]:
            run_windows(
                open_readers, grid, params, compute, writers, lambda: store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB)
            )
            return {}

        return out.write(list(names), grid, params, fill)


@dask_task
def build_series(
    settings: Settings,
    tile: str,
    season: Season,
    products: list[ProductRecord],
    params: CompositeParams,
    mask_uris: dict[str, str | None],
    neighbours: list[ProductRecord] | None = None,
) -> dict[str, dict[str, Any]]:
    """Dask task: the layers made from every product's masked NDVI, window by window: time-series
    features of the season (NDVI amplitude, slope, peak day) and NDVI interpolated at evenly
    spaced days (``ndvi_t0``...), as ``params`` asks, after dropping NDVI spikes (missed clouds
    and shadows: ``params.series_spike``); the season's first and last clear dates are tested
    against ``neighbours`` (products just outside the season), and a pixel cloudy on every date
    of the season takes its NDVI samples (and, with ``params.gap_fill``, its time-series features,
    days counted from the season's start) from the neighbours' dates instead of none (a hole in
    every map made from them); neighbours change nothing else. Reused when already complete."""
    layers = params.series_layers()
    if not layers:
        return {}
    store = open_store(settings, check=False)
    cid = _cid(tile, season, products, params, neighbours)
    out = LayerWriter(settings, store, tile, season, cid, products)
    existing = {name: out.done(name) for name in layers}
    if all(existing.values()):
        return {name: dict(rec or {}) | {"reused": True} for name, rec in existing.items()}
    read = [*products, *(neighbours or [])]
    days = np.array([(dt.datetime.fromisoformat(p.sensing_time).date() - season.start).days for p in read], dtype=float)
    inside = len(products)
    at = sample_days((season.end - season.start).days, params.series_samples) if params.series_samples else None
    with store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        grid = common_grid(store, products)

        def open_readers() -> list[ProductWindowReader]:
            return [ProductWindowReader(store, p, grid, mask_uris.get(p.id), params.mask) for p in read]

        def compute(readers: list[ProductWindowReader], window: rasterio.windows.Window) -> dict[str, np.ndarray]:
            ndvi = []
            for r in readers:
                inv = r.invalid(window)
                ndvi.append(
                    compute_index(
                        "ndvi", {"B04": r.reflectance("B04", window, inv), "B08": r.reflectance("B08", window, inv)}
                    )
                )
            stack = drop_spikes(np.stack(ndvi), days, params.series_spike)
            out = series_features(stack[:inside], days[:inside]) if params.timeseries else {}
            if out and params.gap_fill and len(days) > inside:  # pixels cloudy all season: over the neighbours' dates
                empty = ~np.isfinite(stack[:inside]).any(axis=0)
                if empty.any():
                    outside = series_features(stack[inside:], days[inside:])
                    out = {k: np.where(empty, outside[k], v) for k, v in out.items()}
            if at is not None:  # pixels cloudy all season: filled from the neighbours' dates
                out |= dict(zip(sample_layers(len(at)), season_samples(stack, days, inside, at)[0]))
            return out

        def fill(writers: dict[str, CogWriter]) -> dict[str, int]:
            run_windows(
                open_readers, grid, params, compute, writers, lambda: store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB)
            )
            return {}

        return out.write(layers, grid, params, fill)


def composite_record(
    tile: str,
    season: Season,
    products: list[ProductRecord],
    params: CompositeParams,
    grid: Grid,
    layers: dict[str, dict[str, Any]],
    neighbours: list[ProductRecord] | None = None,
) -> records.CompositeRecord:
    files = {
        name: {k: v for k, v in rec.items() if k not in ("reused", "valid_pixels")} for name, rec in layers.items()
    }
    valid_pixels = int(layers["valid_count"].get("valid_pixels", 0))
    return records.CompositeRecord(
        id=_cid(tile, season, products, params, neighbours),
        tile=tile,
        season=season.name,
        season_start=season.start.isoformat(),
        season_end=season.end.isoformat(),
        products=[p.id for p in products],
        series_neighbours=[n.id for n in neighbours or ()],
        grid=grid.to_dict(),
        bands={b: files[b] for b in params.band_layers()},
        indices={i: files[i] for i in [*params.indices, *params.series_layers()]},
        valid_count=files["valid_count"],
        band_scale=BAND_SCALE,
        valid_percentage=round(100.0 * valid_pixels / (grid.width * grid.height), 3),
        params=params.to_dict(),
        code_version=__version__,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def build_composite(
    settings: Settings,
    tile: str,
    season: Season,
    products: list[ProductRecord],
    params: CompositeParams,
    neighbours: list[ProductRecord] | None = None,
) -> records.CompositeRecord:
    """Every layer of one composite in this process (masks, bands, indices, in that order);
    returns its catalog record. The stage runs the same functions as Dask tasks."""
    masks_ = {p.id: build_cloud_mask(settings, p, params.mask) for p in [*products, *(neighbours or [])]}
    bands = {b: build_band(settings, tile, season, products, params, b, masks_, neighbours) for b in params.bands}
    indices = build_indices(settings, tile, season, products, params, bands, neighbours=neighbours)
    indices |= build_series(settings, tile, season, products, params, masks_, neighbours)
    store = open_store(settings, check=False)
    with store.rasterio_env():
        grid = common_grid(store, products)
    return composite_record(tile, season, products, params, grid, _merge(bands, indices), neighbours)


def _merge(
    bands: dict[str, dict[str, dict[str, Any]]], indices: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    layers: dict[str, dict[str, Any]] = {}
    for files in bands.values():
        layers |= files
    return layers | indices


def _band_stack(readers: list[ProductWindowReader], window: rasterio.windows.Window, band: str) -> np.ndarray:
    """(products, rows, cols) float32 reflectance, each product written straight into its slice."""
    stack = np.empty((len(readers), int(window.height), int(window.width)), dtype=np.float32)
    for i, r in enumerate(readers):
        r.reflectance(band, window, r.invalid(window), out=stack[i])
    return stack


def band_window(
    readers: list[ProductWindowReader],
    window: rasterio.windows.Window,
    band: str,
    with_count: bool,
    percentiles: tuple[int, ...] = (),
    own: int | None = None,
) -> dict[str, np.ndarray]:
    """One band's uint16 median (and percentiles) over the products in one window (and the valid
    count). ``own``: how many of ``readers`` are the season's products; the others (gap filling)
    are read only when the window has a pixel without any valid observation of the season, and
    give such pixels their median and percentiles; the valid count is the season's own."""
    own = len(readers) if own is None else own
    stack = _band_stack(readers[:own], window, band)
    median = median_composite(stack)
    layers = percentile_composite(stack, percentiles) if percentiles else None
    empty = ~np.isfinite(median)
    if own < len(readers) and empty.any():
        outside = _band_stack(readers[own:], window, band)
        median = np.where(empty, median_composite(outside), median)
        if layers is not None:
            layers = np.where(empty, percentile_composite(outside, percentiles), layers)
    out = {band: to_uint16_reflectance(median)}
    if layers is not None:
        for q, layer in zip(percentiles, layers):
            out[f"{band}_p{q}"] = to_uint16_reflectance(layer)
    if with_count:
        out["valid_count"] = valid_count(stack)
    return out


def compute_window(
    readers: list[ProductWindowReader], window: rasterio.windows.Window, params: CompositeParams
) -> dict[str, np.ndarray]:
    """Every output of one window at once: uint16 band medians, float32 indices (from the
    quantised medians) and the valid-observation count. The stage computes the same values band
    by band (:func:`band_window`, then the indices from the stored bands)."""
    out: dict[str, np.ndarray] = {}
    quantised: dict[str, np.ndarray] = {}
    for i, band in enumerate(params.bands):
        layer = band_window(readers, window, band, with_count=i == 0)
        out |= layer
        quantised[band] = dequantise(layer[band])
    for name in params.indices:
        out[name] = compute_index(name, quantised)
    return out


def run_windows(
    open_readers: Callable[[], list[Any]],
    grid: Grid,
    params: CompositeParams,
    compute: Callable[[list[Any], rasterio.windows.Window], dict[str, np.ndarray]],
    writers: dict[str, CogWriter],
    thread_env: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> int:
    """The window loop. With ``params.threads`` > 1, windows are computed in a thread pool (each
    thread with its own dataset handles; GDAL decoding and numpy sorting release the GIL) while
    this thread writes results in order; with 1, each window is computed and written in this
    thread, so a task is one core's work (a local cluster has a worker per core: a compute thread
    beside the writing one only made tasks of two workers compete, and gave one worker alone
    1.1-1.3 cores). Returns the number of pixels with a valid observation (when ``valid_count``
    is computed)."""
    windows = list(block_windows(grid.height, grid.width, params.window_size))
    local = threading.local()
    opened: list[list[Any]] = []
    lock = threading.Lock()

    def work(window: rasterio.windows.Window) -> dict[str, np.ndarray]:
        with thread_env():  # GDAL options (S3 endpoint, credentials) are per thread
            if not hasattr(local, "readers"):
                local.readers = open_readers()
                with lock:
                    opened.append(local.readers)
            return compute(local.readers, window)

    def computed() -> Generator[tuple[rasterio.windows.Window, dict[str, np.ndarray]], None, None]:
        if params.threads <= 1:
            for window in windows:
                yield window, work(window)
            return
        with ThreadPoolExecutor(max_workers=params.threads) as pool:
            pending: dict[int, Future[dict[str, np.ndarray]]] = {}
            ahead = 2 * params.threads  # bounded prefetch keeps memory per window
            for i in range(min(ahead, len(windows))):
                pending[i] = pool.submit(work, windows[i])
            for i, window in enumerate(windows):
                result = pending.pop(i).result()
                if i + ahead < len(windows):
                    pending[i + ahead] = pool.submit(work, windows[i + ahead])
                yield window, result

    valid_pixels = 0
    try:
        # closed (its pool's pending windows finished) before the readers they use are
        with contextlib.closing(computed()) as results:
            for window, result in results:
                for name, arr in result.items():
                    writers[name].write(arr, window)
                if "valid_count" in result:
                    valid_pixels += int((result["valid_count"] > 0).sum())
    finally:
        for readers in opened:
            for r in readers:
                r.close()
    return valid_pixels


def dequantise(stored: np.ndarray) -> np.ndarray:
    """uint16 composite band (reflectance x 10000, 0 = nodata) -> float32 reflectance, NaN nodata."""

    out = np.empty(stored.shape, dtype=np.float32)
    dequantise_into(as_2d(stored), np.float32(BAND_SCALE), as_2d(out))
    return out


@dataclass
class CompositeReport:
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@releases_workers
def composite(
    ctx: Context,
    tiles: list[str],
    seasons: list[Season],
    client: Any,
    params: CompositeParams | None = None,
    progress: bool = True,
) -> CompositeReport:
    """Build (or reuse) the composite of every tile x season as Dask tasks: one per L1C cloud
    mask, one per band, one per group of indices that need the same bands (each waits only for
    its own bands), one for the time-series features. Each layer is kept as soon as it is
    complete, so a killed run resumes where it stopped; the catalog record is written when every
    layer is there."""

    params = params or CompositeParams.from_settings(ctx.settings)
    report = CompositeReport()
    jobs: dict[str, tuple[str, Season, list[ProductRecord], list[ProductRecord], dict[str, Any], dict[str, Any]]] = {}
    owner: dict[Any, str] = {}  # future -> the composite (label) it belongs to
    s = ctx.settings
    for tile in tiles:
        for season in seasons:
            label = f"{tile} {season.name}"
            cid, products, neighbours = lookup.composite_inputs(ctx, tile, season, params)
            if cid is None:
                report.missing.append(label)
                log.warning("%s: no catalogued products, composite skipped", label)
                continue
            existing = records.load(ctx.catalog, records.CompositeRecord, cid)
            if existing is not None and integrity.reusable(ctx, existing):
                report.reused.append(cid)
                continue
            mask_futs = {
                p.id: client.submit(build_cloud_mask, s, p, params.mask, pure=False, key=task_key(f"mask-{p.id}"))
                for p in [*products, *neighbours]
            }
            own_masks = {p.id: mask_futs[p.id] for p in [*products, *(neighbours if params.gap_fill else [])]}
            band_futs = {
                b: client.submit(
                    build_band,
                    s,
                    tile,
                    season,
                    products,
                    params,
                    b,
                    own_masks,
                    neighbours,
                    pure=False,
                    key=task_key(f"band-{cid}-{b}"),
                )
                for b in params.bands
            }
            # a layer task made from band medians goes before the bands still waiting once its own
            # are done: the longest tasks (an index group takes 2-3 band tasks' time) start early
            # instead of ending the stage with one worker busy and the others idle, and each
            # composite is complete (and catalogued) sooner
            layer_futs = {
                f"indices {'+'.join(names)}": client.submit(
                    build_indices,
                    s,
                    tile,
                    season,
                    products,
                    params,
                    {b: band_futs[b] for b in needed},
                    names,
                    neighbours,
                    pure=False,
                    priority=1,
                    key=task_key(f"indices-{cid}-{'-'.join(names)}"),
                )
                for needed, names in index_groups(params.indices)
            }
            layer_futs["series"] = client.submit(
                build_series,
                s,
                tile,
                season,
                products,
                params,
                mask_futs,
                neighbours,
                pure=False,
                priority=1,
                key=task_key(f"series-{cid}"),
            )
            jobs[label] = (tile, season, products, neighbours, band_futs, layer_futs)
            for fut in [*band_futs.values(), *layer_futs.values()]:
                owner[fut] = label
    remaining = {label: len(job[4]) + len(job[5]) for label, job in jobs.items()}
    with step(log, "composite", len(jobs), "composite", progress) as bar:
        for fut in as_completed(list(owner)):
            label = owner[fut]
            if label in report.failed:
                continue
            try:
                fut.result()
            except RUN_STOPPERS:  # an outage past OUTAGE_TOLERANCE, a full disk: no other tile can pass
                raise
            except LandcoverError as exc:
                report.failed[label] = str(exc)
                log.error("%s: %s", label, exc)
                bar.update(1)
                continue
            remaining[label] -= 1
            if remaining[label]:
                continue
            tile, season, products, neighbours, band_futs, layer_futs = jobs[label]
            bands = {b: f.result() for b, f in band_futs.items()}
            indices: dict[str, dict[str, Any]] = {}
            for f in layer_futs.values():
                indices |= f.result()
            layers = _merge(bands, indices)
            reused = sum(1 for rec in layers.values() if rec.get("reused"))
            if reused:
                log.info("%s: %d of %d layers were already complete (resumed)", label, reused, len(layers))
            with ctx.store.rasterio_env():
                grid = common_grid(ctx.store, products)
            record = composite_record(tile, season, products, params, grid, layers, neighbours)
            records.store(ctx.catalog, record)
            report.built.append(record.id)
            bar.update(1)
    return report
