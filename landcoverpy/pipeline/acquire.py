"""Stage 1: acquire Sentinel-2 products into the object store and catalog them.

One Dask task per product. A product's objects are written first and checked (readable, right
resolution); only then is its catalog record written (by the client). A failed or partial fetch
deletes what it wrote and is never catalogued, so a re-run completes the set.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio
from distributed import as_completed
from rasterio._err import CPLE_BaseError
from rasterio.windows import Window, from_bounds

from landcoverpy import __version__, records
from landcoverpy.assets import ids, integrity, keys
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import RUN_STOPPERS, LandcoverError, ProviderError, RasterError
from landcoverpy.faults import call_source
from landcoverpy.inputs import Season
from landcoverpy.pipeline.tasks import dask_task, task_key
from landcoverpy.progress import step
from landcoverpy.raster.cog import jp2_to_cog, translate_to_cog
from landcoverpy.raster.grid import Bounds, contains, snap_bounds, union
from landcoverpy.records import ProductRecord
from landcoverpy.scratch import scratch_dir
from landcoverpy.sentinel2 import BAND_RESOLUTION, L1C_BANDS, L2A_BANDS, REFERENCE_BAND, baseline_offset
from landcoverpy.sources.base import ProductCandidate, Provider
from landcoverpy.storage import open_store

log = logging.getLogger(__name__)


def select_products(candidates: list[ProductCandidate], min_useful: float, max_products: int) -> list[ProductCandidate]:
    """Products whose useful-data % exceeds ``min_useful``, best first, at most ``max_products``
    (ties broken by sensing time then id, so the choice is deterministic)."""
    keep = [c for c in candidates if c.useful_percentage > min_useful]
    keep.sort(key=lambda c: (-c.useful_percentage, c.sensing_time, c.product_id))
    return keep[:max_products]


def expected_bands(level: str) -> list[str]:
    return L2A_BANDS if level == "L2A" else L1C_BANDS


def _check_band(store: Any, bucket: str, key: str, band: str, product_id: str) -> dict[str, Any]:
    with store.rasterio_env(), rasterio.open(store.raster_uri(bucket, key)) as src:
        res = abs(src.transform.a)
        expected = BAND_RESOLUTION.get(band)
        if expected is not None and abs(res - expected) > 0.5:
            raise RasterError(f"{product_id} {band}: resolution {res:g} m, expected {expected} m")
        # decode the last block: a truncated file opens (header intact) but fails here
        tail = rasterio.windows.Window(
            max(0, src.width - 64), max(0, src.height - 64), min(64, src.width), min(64, src.height)
        )
        try:
            src.read(1, window=tail)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(f"{product_id} {band}: the file is damaged or truncated ({exc})") from None
        return {
            "resolution": round(res),
            "width": src.width,
            "height": src.height,
            "crs": src.crs.to_string(),
            "bounds": list(src.bounds),
        }


def _check_extents(product_id: str, bands: dict[str, dict[str, Any]]) -> None:
    """All bands must cover the same area (within one 60 m pixel)."""
    ref = next(iter(bands.values()))
    for band, info in bands.items():
        if info["crs"] != ref["crs"]:
            raise RasterError(f"{product_id} {band}: CRS {info['crs']} differs from {ref['crs']}")
        if any(abs(a - b) > 61 for a, b in zip(info["bounds"], ref["bounds"])):
            raise RasterError(f"{product_id} {band}: extent {info['bounds']} differs from the other bands")


def _check_size(product_id: str, band: str, got: int, listed: int | None) -> None:
    if listed is not None and got != listed:
        raise ProviderError(f"{product_id} {band}: got {got} bytes, the provider lists {listed}")


def _store_jp2_as_cog(
    settings: Settings,
    store: Any,
    provider: Provider,
    product: ProductCandidate,
    band: str,
    asset: Any,
    written: list[str],
) -> tuple[str, dict[str, Any]]:
    """A JPEG 2000 band is decoded once, here, and stored as a tiled, DEFLATE-compressed COG
    (lossless: the same pixels): every composite that reads it then decodes ~7x faster than
    JPEG 2000 (benchmarks/jp2_read.py). The record keeps the source's format and size."""

    bucket = settings.MINIO_BUCKET_NAME_PRODUCTS
    key = keys.product_band_key(product.tile, product.product_id, band, ".tif")
    with scratch_dir(settings.TMP_DIR) as tmp:
        jp2, cog = Path(tmp) / f"{band}.jp2", Path(tmp) / f"{band}.tif"

        def download() -> None:
            with provider.open_asset(product, asset) as stream, jp2.open("wb") as fh:
                shutil.copyfileobj(stream, fh, 1 << 20)

        call_source(provider, f"{product.product_id} {band}", download, settings.OUTAGE_TOLERANCE)
        size = jp2.stat().st_size
        _check_size(product.product_id, band, size, asset.size)
        try:
            jp2_to_cog(jp2, cog)
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:  # GDAL's errors while decoding
            raise RasterError(f"{product.product_id} {band}: the file is damaged or truncated ({exc})") from None
        written.append(key)
        store.put_file(bucket, key, cog)
    return key, {"source_format": "JP2", "source_size": size, "fetched_bytes": size}


WINDOW_STEP = 60.0  # m: a window's edges fall on pixel edges of every band (10, 20 and 60 m)


def product_window(src: Any, bounds: Bounds) -> Bounds | None:
    """``bounds`` snapped outwards to :data:`WINDOW_STEP` from the tile's corner and clipped to the
    band ``src``; None when that is the whole band (then the product is fetched whole)."""
    full = tuple(src.bounds)
    snapped = snap_bounds(bounds, (src.transform.c, src.transform.f), WINDOW_STEP, full)
    if snapped[2] <= snapped[0] or snapped[3] <= snapped[1]:
        raise ProviderError(f"the area of interest {bounds} lies outside the tile {full}")
    return None if contains(snapped, full) else snapped


def covering_window(src: Any, bounds: Bounds) -> Window:
    """The band's pixels covering ``bounds`` (whole pixels; a band whose grid is offset from the
    10 m one, as some products' 20 and 60 m bands are, gets the pixels around the edges too)."""
    w = from_bounds(*bounds, transform=src.transform)
    c0, r0 = math.floor(w.col_off + 1e-6), math.floor(w.row_off + 1e-6)
    c1, r1 = math.ceil(w.col_off + w.width - 1e-6), math.ceil(w.row_off + w.height - 1e-6)
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, src.width), min(r1, src.height)
    return Window(c0, r0, c1 - c0, r1 - r0)


def _store_band_window(
    settings: Settings,
    store: Any,
    provider: Provider,
    product: ProductCandidate,
    band: str,
    asset: Any,
    bounds: Bounds,
    written: list[str],
) -> tuple[str, dict[str, Any]]:
    """The band's pixels inside ``bounds`` only, read through byte ranges of the remote COG or
    JPEG 2000 (GDAL reads the tiles the window covers) and stored as a COG."""

    bucket = settings.MINIO_BUCKET_NAME_PRODUCTS
    key = keys.product_band_key(product.tile, product.product_id, band, ".tif", ids.window_tag(bounds))
    with scratch_dir(settings.TMP_DIR) as tmp:
        raw, cog = Path(tmp) / f"{band}.raw.tif", Path(tmp) / f"{band}.tif"

        def cut() -> tuple[int, str]:
            remote = provider.open_range(product, asset)
            name = f"/{product.product_id}/{band}{asset.extension}"
            with remote.reading(), rasterio.open(name, opener=remote.opener(name)) as src:
                window = covering_window(src, bounds)
                data = src.read(1, window=window)
                profile = {
                    "driver": "GTiff",
                    "width": data.shape[1],
                    "height": data.shape[0],
                    "count": 1,
                    "dtype": data.dtype,
                    "crs": src.crs,
                    "transform": src.window_transform(window),
                    "nodata": src.nodata if src.nodata is not None else 0,
                    "tiled": True,
                    "blockxsize": 256,
                    "blockysize": 256,
                }
            with rasterio.open(raw, "w", **profile) as out:
                out.write(data, 1)
            return int(remote.fetched), str(data.dtype)

        try:
            fetched, dtype = call_source(
                provider, f"{product.product_id} {band} window", cut, settings.OUTAGE_TOLERANCE
            )
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            raise RasterError(f"{product.product_id} {band}: cannot read its window ({exc})") from None
        translate_to_cog(raw, cog, dtype)
        written.append(key)
        store.put_file(bucket, key, cog)
    return key, {"fetched_bytes": fetched}


def _window_for(provider: Provider, product: ProductCandidate, bounds: Bounds | None) -> tuple[Bounds | None, int]:
    """The window of ``product`` an area of interest needs (None: the whole product), from its
    reference band's georeferencing, and the bytes read to learn it."""
    if bounds is None:
        return None, 0
    ref = product.assets.get(REFERENCE_BAND)
    remote = provider.open_range(product, ref) if ref is not None else None
    if remote is None or ref is None:
        return None, 0  # a provider that streams whole assets only
    name = f"/{product.product_id}/ref{ref.extension}"
    with remote.reading(), rasterio.open(name, opener=remote.opener(name)) as src:
        return product_window(src, bounds), int(remote.fetched)


@dask_task
def fetch_product(
    settings: Settings, provider: Provider, product: ProductCandidate, bounds: Bounds | None = None
) -> ProductRecord:
    """Stream every band of ``product`` into the products bucket and return its catalog record;
    with ``bounds`` (an area of interest, in the tile's CRS) only the window covering them, when
    the provider reads byte ranges. Runs on a Dask worker. On any failure, the objects written so
    far are deleted."""
    store = open_store(settings, check=False)
    bucket = settings.MINIO_BUCKET_NAME_PRODUCTS
    missing = [b for b in expected_bands(product.level) if b not in product.assets]
    if missing:
        raise ProviderError(f"{product.product_id}: missing band(s) {', '.join(missing)}")
    written: list[str] = []
    window, header_bytes = call_source(
        provider,
        f"{product.product_id} window",
        lambda: _window_for(provider, product, bounds),
        settings.OUTAGE_TOLERANCE,
    )
    try:
        bands: dict[str, dict[str, Any]] = {}
        for band in expected_bands(product.level):
            asset = product.assets[band]
            if window is not None:
                key, source = _store_band_window(settings, store, provider, product, band, asset, window, written)
            elif asset.extension.lower() == ".jp2":
                key, source = _store_jp2_as_cog(settings, store, provider, product, band, asset, written)
            else:
                key = keys.product_band_key(product.tile, product.product_id, band, asset.extension)

                def upload(asset: Any = asset, key: str = key) -> None:
                    with provider.open_asset(product, asset) as stream:
                        store.put_stream(bucket, key, stream)

                call_source(provider, f"{product.product_id} {band}", upload, settings.OUTAGE_TOLERANCE)
                written.append(key)
                _check_size(product.product_id, band, store.size(bucket, key), asset.size)
                source = {"fetched_bytes": store.size(bucket, key)}
            info = _check_band(store, bucket, key, band, product.product_id)
            bands[band] = {"bucket": bucket, "key": key, "size": store.size(bucket, key), **source, **info}
        _check_extents(product.product_id, bands)
    except BaseException:
        for key in written:
            try:
                store.delete(bucket, key)
            except LandcoverError:
                log.warning("could not remove partial object %s/%s", bucket, key)
        raise
    offsets = product.extra.get("offsets") or {}
    default_offset = baseline_offset(product.processing_baseline)
    return ProductRecord(
        id=product.product_id,
        product_id=product.product_id,
        title=product.product_id,
        tile=product.tile,
        sensing_time=product.sensing_time.isoformat(),
        platform=product.platform,
        level=product.level,
        processing_baseline=product.processing_baseline,
        offsets={b: float(offsets.get(b, default_offset)) for b in bands if b != "SCL"},
        cloud_percentage=product.cloud_percentage,
        nodata_percentage=product.nodata_percentage,
        useful_percentage=product.useful_percentage,
        provider=product.provider,
        bands=bands,
        **({"window": {"bounds": list(window), "crs": next(iter(bands.values()))["crs"]}} if window else {}),
        fetched_bytes=header_bytes + sum(int(b.get("fetched_bytes", 0)) for b in bands.values()),
        acquired=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        code_version=__version__,
    )


@dataclass
class TileSeasonReport:
    tile: str
    season: str
    found: int = 0
    selected: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    completed: list[str] = field(default_factory=list)  # stored for a smaller area, fetched again larger
    fetched_bytes: int = 0


@dataclass
class AcquireReport:
    entries: list[TileSeasonReport]

    @property
    def ok(self) -> bool:
        return all(not e.failed and e.error is None and e.selected for e in self.entries)

    @property
    def fetched_bytes(self) -> int:
        return sum(e.fetched_bytes for e in self.entries)

    def lines(self) -> list[str]:
        out = []
        for e in self.entries:
            if e.error:
                status = f"ERROR {e.error}"
            elif not e.selected:
                status = f"no usable products ({e.found} found)"
            else:
                status = (
                    f"{len(e.selected)} selected of {e.found}: {len(e.fetched)} fetched"
                    + (f" ({len(e.completed)} completing a smaller area's)" if e.completed else "")
                    + f", {len(e.skipped_existing)} already stored, {len(e.failed)} failed"
                    + (f", {e.fetched_bytes / 1e6:.1f} MB fetched" if e.fetched_bytes else "")
                )
            out.append(f"{e.tile} {e.season}: {status}")
            for pid, why in e.failed.items():
                out.append(f"    {pid}: {why}")
        return out


def needed_window(stored: ProductRecord, bounds: Bounds | None) -> tuple[bool, Bounds | None]:
    """Whether a stored product must be fetched again for ``bounds`` (None: the whole tile), and
    the window to fetch: a product stored for a smaller area is completed to cover both."""
    window = stored.window
    if window is None:
        return False, None  # whole: covers any area
    held = tuple(window["bounds"])
    if bounds is not None and contains(held, bounds):
        return False, None
    return True, None if bounds is None else union(held, bounds)


def acquire(
    ctx: Context,
    provider: Provider,
    tiles: list[str],
    seasons: list[Season],
    client: Any,
    progress: bool = True,
    windows: dict[str, Bounds] | None = None,
) -> AcquireReport:
    """Search, select and fetch products for every tile x season; catalog what landed.
    ``windows``: per tile, the part (bounds in the tile's CRS) an area of interest needs; only
    that window of each band is fetched (byte ranges) and a product stored for a smaller area is
    completed. Tiles not in ``windows`` are fetched whole."""

    s = ctx.settings
    entries: list[TileSeasonReport] = []
    futures: dict[Any, tuple[TileSeasonReport, ProductCandidate, ProductRecord | None]] = {}
    for tile in tiles:
        bounds = (windows or {}).get(tile)
        for season in seasons:
            entry = TileSeasonReport(tile=tile, season=season.name)
            entries.append(entry)
            try:
                candidates = call_source(
                    provider,
                    f"search {tile} {season.name}",
                    functools.partial(provider.search, tile, season.start, season.end),
                    s.OUTAGE_TOLERANCE,
                )
            except RUN_STOPPERS:  # an outage past OUTAGE_TOLERANCE, a full disk: no other tile can pass
                raise
            except LandcoverError as exc:
                entry.error = str(exc)
                log.error("%s %s: %s", tile, season.name, exc)
                continue
            entry.found = len(candidates)
            chosen = select_products(candidates, s.MIN_USEFUL_DATA_PERCENTAGE, s.MAX_PRODUCTS_COMPOSITE)
            entry.selected = [c.product_id for c in chosen]
            if not chosen:
                log.warning(
                    "%s %s: no product above %.0f%% useful data (%d found)",
                    tile,
                    season.name,
                    s.MIN_USEFUL_DATA_PERCENTAGE,
                    len(candidates),
                )
            for cand in chosen:
                stored = records.load(ctx.catalog, ProductRecord, cand.product_id)
                if stored is not None and not integrity.reusable(ctx, stored):
                    stored = None  # a band went missing: fetched again
                window = bounds
                if stored is not None:
                    again, window = needed_window(stored, bounds)
                    if not again:
                        entry.skipped_existing.append(cand.product_id)
                        continue
                fut = client.submit(
                    fetch_product, s, provider, cand, window, key=task_key(f"fetch-{cand.product_id}"), pure=False
                )
                futures[fut] = (entry, cand, stored)
    if futures:
        with step(log, "acquire", len(futures), "product", progress) as bar:
            for fut in as_completed(list(futures)):
                entry, cand, stored = futures[fut]
                try:
                    record = records.store(ctx.catalog, fut.result())
                    entry.fetched.append(cand.product_id)
                    entry.fetched_bytes += record.fetched_bytes
                    if stored is not None:
                        entry.completed.append(cand.product_id)
                        _remove_replaced(ctx, stored, record)
                except RUN_STOPPERS:  # an outage past OUTAGE_TOLERANCE, a full disk: no other tile can pass
                    raise
                except LandcoverError as exc:
                    entry.failed[cand.product_id] = str(exc)
                    log.error("%s: %s", cand.product_id, exc)
                bar.update(1)
    for line in AcquireReport(entries).lines():
        log.info(line)
    return AcquireReport(entries)


def _remove_replaced(ctx: Context, old: ProductRecord, new: ProductRecord) -> None:
    """The objects of a product's smaller window, once its larger one is catalogued."""
    kept = {(b.bucket, b.key) for b in new.bands.values()}
    for b in old.bands.values():
        if (b.bucket, b.key) not in kept:
            try:
                ctx.store.delete(b.bucket, b.key)
            except LandcoverError:
                log.warning("could not remove %s/%s (a smaller window of %s)", b.bucket, b.key, old.id)
