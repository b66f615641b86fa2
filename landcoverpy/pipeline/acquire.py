"""Stage 1: acquire Sentinel-2 products into the object store and catalog them.

One Dask task per product. A product's objects are written first and checked (readable, right
resolution); only then is its catalog record written (by the client). A failed or partial fetch
deletes what it wrote and is never catalogued, so a re-run completes the set.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import rasterio
from rasterio._err import CPLE_BaseError

from landcoverpy.pipeline.tasks import dask_task, task_key
from landcoverpy import __version__
from landcoverpy.assets import keys
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import LandcoverError, ProviderError, RasterError
from landcoverpy.progress import step
from landcoverpy.retry import with_retries
from landcoverpy.inputs import Season
from landcoverpy.sentinel2 import BAND_RESOLUTION, L1C_BANDS, L2A_BANDS, baseline_offset
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
        tail = rasterio.windows.Window(max(0, src.width - 64), max(0, src.height - 64), min(64, src.width),
                                       min(64, src.height))
        try:
            src.read(1, window=tail)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(f"{product_id} {band}: the file is damaged or truncated ({exc})") from None
        return {"resolution": round(res), "width": src.width, "height": src.height, "crs": src.crs.to_string(),
                "bounds": list(src.bounds)}


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


def _store_jp2_as_cog(settings: Settings, store: Any, provider: Provider, product: ProductCandidate, band: str,
                      asset: Any, written: list[str]) -> tuple[str, dict[str, Any]]:
    """A JPEG 2000 band is decoded once, here, and stored as a tiled, DEFLATE-compressed COG
    (lossless: the same pixels): every composite that reads it then decodes ~7x faster than
    JPEG 2000 (benchmarks/jp2_read.py). The record keeps the source's format and size."""
    import shutil
    from pathlib import Path

    from landcoverpy.raster.cog import jp2_to_cog
    from landcoverpy.scratch import scratch_dir

    bucket = settings.MINIO_BUCKET_NAME_PRODUCTS
    key = keys.product_band_key(product.tile, product.product_id, band, ".tif")
    with scratch_dir(settings.TMP_DIR) as tmp:
        jp2, cog = Path(tmp) / f"{band}.jp2", Path(tmp) / f"{band}.tif"

        def download() -> None:
            with provider.open_asset(product, asset) as stream, jp2.open("wb") as fh:
                shutil.copyfileobj(stream, fh, 1 << 20)

        with_retries(f"{product.product_id} {band}", download)
        size = jp2.stat().st_size
        _check_size(product.product_id, band, size, asset.size)
        try:
            jp2_to_cog(jp2, cog)
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:  # GDAL's errors while decoding
            raise RasterError(f"{product.product_id} {band}: the file is damaged or truncated ({exc})") from None
        written.append(key)
        store.put_file(bucket, key, cog)
    return key, {"source_format": "JP2", "source_size": size}


@dask_task
def fetch_product(settings: Settings, provider: Provider, product: ProductCandidate) -> dict[str, Any]:
    """Stream every band of ``product`` into the products bucket and return its catalog record.
    Runs on a Dask worker. On any failure, the objects written so far are deleted."""
    store = open_store(settings, check=False)
    bucket = settings.MINIO_BUCKET_NAME_PRODUCTS
    missing = [b for b in expected_bands(product.level) if b not in product.assets]
    if missing:
        raise ProviderError(f"{product.product_id}: missing band(s) {', '.join(missing)}")
    written: list[str] = []
    try:
        bands: dict[str, dict[str, Any]] = {}
        for band in expected_bands(product.level):
            asset = product.assets[band]
            if asset.extension.lower() == ".jp2":
                key, source = _store_jp2_as_cog(settings, store, provider, product, band, asset, written)
            else:
                key = keys.product_band_key(product.tile, product.product_id, band, asset.extension)

                def upload(asset: Any = asset, key: str = key) -> None:
                    with provider.open_asset(product, asset) as stream:
                        store.put_stream(bucket, key, stream)

                with_retries(f"{product.product_id} {band}", upload)
                written.append(key)
                _check_size(product.product_id, band, store.size(bucket, key), asset.size)
                source = {}
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
    return {
        "_id": product.product_id,
        "product_id": product.product_id,
        "title": product.product_id,
        "tile": product.tile,
        "sensing_time": product.sensing_time.isoformat(),
        "platform": product.platform,
        "level": product.level,
        "processing_baseline": product.processing_baseline,
        "offsets": {b: float(offsets.get(b, default_offset)) for b in bands if b != "SCL"},
        "cloud_percentage": product.cloud_percentage,
        "nodata_percentage": product.nodata_percentage,
        "useful_percentage": product.useful_percentage,
        "provider": product.provider,
        "bands": bands,
        "acquired": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": __version__,
    }


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


@dataclass
class AcquireReport:
    entries: list[TileSeasonReport]

    @property
    def ok(self) -> bool:
        return all(not e.failed and e.error is None and e.selected for e in self.entries)

    def lines(self) -> list[str]:
        out = []
        for e in self.entries:
            if e.error:
                status = f"ERROR {e.error}"
            elif not e.selected:
                status = f"no usable products ({e.found} found)"
            else:
                status = (f"{len(e.selected)} selected of {e.found}: {len(e.fetched)} fetched, "
                          f"{len(e.skipped_existing)} already stored, {len(e.failed)} failed")
            out.append(f"{e.tile} {e.season}: {status}")
            for pid, why in e.failed.items():
                out.append(f"    {pid}: {why}")
        return out


def acquire(
    ctx: Context,
    provider: Provider,
    tiles: list[str],
    seasons: list[Season],
    client: Any,
    progress: bool = True,
) -> AcquireReport:
    """Search, select and fetch products for every tile x season; catalog what landed."""
    from distributed import as_completed

    s = ctx.settings
    entries: list[TileSeasonReport] = []
    futures: dict[Any, tuple[TileSeasonReport, ProductCandidate]] = {}
    for tile in tiles:
        for season in seasons:
            entry = TileSeasonReport(tile=tile, season=season.name)
            entries.append(entry)
            try:
                candidates = with_retries(f"search {tile} {season.name}",
                                          lambda t=tile, se=season: provider.search(t, se.start, se.end))
            except LandcoverError as exc:
                entry.error = str(exc)
                log.error("%s %s: %s", tile, season.name, exc)
                continue
            entry.found = len(candidates)
            chosen = select_products(candidates, s.MIN_USEFUL_DATA_PERCENTAGE, s.MAX_PRODUCTS_COMPOSITE)
            entry.selected = [c.product_id for c in chosen]
            if not chosen:
                log.warning("%s %s: no product above %.0f%% useful data (%d found)", tile, season.name,
                            s.MIN_USEFUL_DATA_PERCENTAGE, len(candidates))
            for cand in chosen:
                if ctx.catalog.exists("products", cand.product_id):
                    entry.skipped_existing.append(cand.product_id)
                    continue
                fut = client.submit(fetch_product, s, provider, cand, key=task_key(f"fetch-{cand.product_id}"), pure=False)
                futures[fut] = (entry, cand)
    if futures:
        with step(log, "acquire", len(futures), "product", progress) as bar:
            for fut in as_completed(list(futures)):
                entry, cand = futures[fut]
                try:
                    record = fut.result()
                    ctx.catalog.upsert("products", record)
                    entry.fetched.append(cand.product_id)
                except LandcoverError as exc:
                    entry.failed[cand.product_id] = str(exc)
                    log.error("%s: %s", cand.product_id, exc)
                bar.update(1)
    for line in AcquireReport(entries).lines():
        log.info(line)
    return AcquireReport(entries)
