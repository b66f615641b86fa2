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
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from landcoverpy import __version__
from landcoverpy.assets import ids, keys, lookup, publish
from landcoverpy.assets.params import CompositeParams
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import LandcoverError, RasterError
from landcoverpy.inputs import Season
from landcoverpy.raster import masks
from landcoverpy.raster.cog import CogWriter, write_cog
from landcoverpy.raster.composite import median_composite, valid_count
from landcoverpy.raster.grid import Grid, block_windows
from landcoverpy.pipeline.tasks import dask_task, task_key
from landcoverpy.raster.indices import compute_index
from landcoverpy.raster.reading import GridReader, expand_window
from landcoverpy.sentinel2 import dn_to_reflectance
from landcoverpy.storage import ObjectStore, open_store

log = logging.getLogger(__name__)

S2CLOUDLESS_BANDS = ["B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12"]
GDAL_CACHE_MB = 256  # GDAL's block cache defaults to 5 % of RAM; bound it so memory follows windows
BAND_SCALE = 10000.0  # composite bands are stored as uint16 reflectance x 10000, 0 = nodata


def common_grid(store: ObjectStore, products: list[dict[str, Any]]) -> Grid:
    """The 10 m grid all products share; RasterError naming them when they differ."""
    grids = {p["_id"]: lookup.product_grid(store, p) for p in products}
    ref_id, ref = next(iter(grids.items()))
    for pid, grid in grids.items():
        if not grid.same_as(ref):
            raise RasterError(
                f"products of one tile are on different grids: {ref_id} ({ref.crs}, {ref.width}x{ref.height}, "
                f"origin {ref.transform[2]:.0f},{ref.transform[5]:.0f}) vs {pid} ({grid.crs}, {grid.width}x"
                f"{grid.height}, origin {grid.transform[2]:.0f},{grid.transform[5]:.0f})"
            )
    return ref


def s2cloudless_mask_key(product: dict[str, Any], mask: masks.MaskSettings) -> str:
    return keys.cloud_mask_key(product["tile"], product["_id"], mask.cloud_probability_threshold,
                               mask.cloudless_average_over, mask.cloudless_dilation)


def ensure_s2cloudless_mask(settings: Settings, store: ObjectStore, product: dict[str, Any],
                            mask: masks.MaskSettings) -> tuple[str, str]:
    """Cloud mask of an L1C product by s2cloudless on its 60 m grid (1 = cloud), stored as a COG
    and reused when present. A 60 m tile is at most 1830 x 1830 pixels, whatever the products."""
    from s2cloudless import S2PixelCloudDetector

    bucket = settings.MINIO_BUCKET_NAME_COMPOSITES
    key = s2cloudless_mask_key(product, mask)
    if store.exists(bucket, key):
        return bucket, key
    grid60 = lookup.product_grid(store, product, "B01")
    layers = []
    with store.rasterio_env():
        for band in S2CLOUDLESS_BANDS:
            b = product["bands"][band]
            reader = GridReader(store.raster_uri(b["bucket"], b["key"]), grid60, Resampling.average)
            try:
                dn = reader.read(rasterio.windows.Window(0, 0, grid60.width, grid60.height))
            finally:
                reader.close()
            layers.append(dn_to_reflectance(dn, product["offsets"].get(band, 0.0)))
    data = np.stack(layers, axis=-1)
    nodata = np.isnan(data).any(axis=-1)
    data = np.nan_to_num(data, nan=0.0)
    detector = S2PixelCloudDetector(
        threshold=mask.cloud_probability_threshold, average_over=mask.cloudless_average_over,
        dilation_size=mask.cloudless_dilation, all_bands=False,
    )
    cloud = detector.get_cloud_masks(data[np.newaxis])[0].astype("uint8")
    cloud[nodata] = 1
    with tempfile.TemporaryDirectory(dir=_tmp(settings)) as tmp:
        path = Path(tmp) / "mask.tif"
        write_cog(path, cloud, grid60, nodata=None, descriptions=["s2cloudless cloud mask (1 = cloud)"],
                  tags={"cloud_percentage": f"{100 * cloud.mean():.2f}"})
        store.put_file(bucket, key, path)
    log.info("%s: s2cloudless cloud cover %.1f%%", product["_id"], 100 * cloud.mean())
    return bucket, key


def _tmp(settings: Settings) -> Path:
    settings.TMP_DIR.mkdir(parents=True, exist_ok=True)
    return settings.TMP_DIR


class ProductWindowReader:
    """Reads, for one product, masked reflectance windows of any band on the 10 m grid."""

    def __init__(self, store: ObjectStore, product: dict[str, Any], grid: Grid, mask_uri: str | None,
                 mask: masks.MaskSettings) -> None:
        self.product, self.grid, self.mask = product, grid, mask
        self.readers: dict[str, GridReader] = {}
        self.store = store
        if product["level"] == "L2A":
            scl = product["bands"]["SCL"]
            self.mask_reader = GridReader(store.raster_uri(scl["bucket"], scl["key"]), grid)
        else:
            assert mask_uri is not None
            self.mask_reader = GridReader(mask_uri, grid)

    def invalid(self, window: rasterio.windows.Window) -> np.ndarray:
        halo = self.mask.dilation_pixels
        grown, (rs, cs) = expand_window(window, halo, self.grid)
        raw = self.mask_reader.read(grown)
        m = masks.scl_mask(raw, self.mask.scl_classes) if self.product["level"] == "L2A" else raw.astype(bool)
        return masks.dilate(m, halo)[rs, cs]

    def reflectance(self, band: str, window: rasterio.windows.Window, invalid: np.ndarray) -> np.ndarray:
        if band not in self.readers:
            b = self.product["bands"][band]
            self.readers[band] = GridReader(self.store.raster_uri(b["bucket"], b["key"]), self.grid)
        dn = self.readers[band].read(window)
        refl = dn_to_reflectance(dn, self.product["offsets"].get(band, 0.0))
        return masks.apply_mask(refl, invalid)

    def close(self) -> None:
        for r in self.readers.values():
            r.close()
        self.mask_reader.close()


def to_uint16_reflectance(refl: np.ndarray) -> np.ndarray:
    out = np.zeros(refl.shape, dtype="uint16")
    ok = ~np.isnan(refl)
    out[ok] = np.clip(np.rint(refl[ok] * BAND_SCALE), 1, 65535).astype("uint16")
    return out


@dask_task
def build_composite(settings: Settings, tile: str, season: Season, products: list[dict[str, Any]],
                    params: CompositeParams) -> dict[str, Any]:
    """Dask task: compute and store every band, index and the valid-observation count of one
    tile x season composite; return its catalog record."""
    store = open_store(settings, check=False)
    cid = ids.composite_id(tile, season, [p["_id"] for p in products], params)
    bucket = settings.MINIO_BUCKET_NAME_COMPOSITES
    with store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        grid = common_grid(store, products)
        mask_uris: dict[str, str | None] = {}
        for p in products:
            if p["level"] == "L1C":
                mb, mk = ensure_s2cloudless_mask(settings, store, p, params.mask)
                mask_uris[p["_id"]] = store.raster_uri(mb, mk)
            else:
                mask_uris[p["_id"]] = None
        outputs = [*params.bands, *params.indices, "valid_count"]
        with tempfile.TemporaryDirectory(dir=_tmp(settings)) as tmp:
            paths = {name: Path(tmp) / f"{name}.tif" for name in outputs}
            writers = {}
            common_tags = {"tile": tile, "season": season.name, "products": ",".join(p["_id"] for p in products),
                           "composite_id": cid}
            for name in outputs:
                if name in params.bands:
                    kw: dict[str, Any] = dict(dtype="uint16", nodata=0, overview_resampling="average",
                                              descriptions=[f"{name} median reflectance x 10000"],
                                              tags=common_tags | {"scale_factor": str(1 / BAND_SCALE)},
                                              scales=[1 / BAND_SCALE], offsets=[0.0])
                elif name == "valid_count":
                    kw = dict(dtype="uint8", nodata=None, overview_resampling="nearest",
                              descriptions=["number of valid observations"], tags=common_tags)
                else:
                    kw = dict(dtype="float32", nodata=float("nan"), overview_resampling="average",
                              descriptions=[f"{name} index of the median composite"], tags=common_tags)
                writers[name] = CogWriter(paths[name], grid, tmp_dir=tmp, **kw)
            def open_readers() -> list[ProductWindowReader]:
                return [ProductWindowReader(store, p, grid, mask_uris[p["_id"]], params.mask) for p in products]

            with contextlib.ExitStack() as stack:
                open_writers = {n: stack.enter_context(w) for n, w in writers.items()}
                valid_pixels = _composite_windows(open_readers, grid, params, open_writers,
                                                  lambda: store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB))
            files = {name: publish.put_file(store, bucket, keys.composite_layer_key(tile, season.name, cid, name), path)
                     for name, path in paths.items()}
    return {
        "_id": cid,
        "tile": tile,
        "season": season.name,
        "season_start": season.start.isoformat(),
        "season_end": season.end.isoformat(),
        "products": [p["_id"] for p in products],
        "grid": grid.to_dict(),
        "bands": {b: files[b] for b in params.bands},
        "indices": {i: files[i] for i in params.indices},
        "valid_count": files["valid_count"],
        "band_scale": BAND_SCALE,
        "valid_percentage": round(100.0 * valid_pixels / (grid.width * grid.height), 3),
        "params": params.to_dict(),
        "code_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def compute_window(readers: list[ProductWindowReader], window: rasterio.windows.Window,
                   params: CompositeParams) -> dict[str, np.ndarray]:
    """Every output of one window: uint16 band medians, float32 indices (from the quantised
    medians, so training and prediction features agree) and the valid-observation count."""
    invalid = [r.invalid(window) for r in readers]
    out: dict[str, np.ndarray] = {}
    quantised: dict[str, np.ndarray] = {}
    for band in params.bands:
        stack = np.stack([r.reflectance(band, window, inv) for r, inv in zip(readers, invalid)])
        if "valid_count" not in out:
            out["valid_count"] = valid_count(stack)
        out[band] = to_uint16_reflectance(median_composite(stack))
        quantised[band] = dequantise(out[band])
        del stack
    for name in params.indices:
        out[name] = compute_index(name, quantised)
    return out


def _composite_windows(open_readers: Callable[[], list[ProductWindowReader]], grid: Grid, params: CompositeParams,
                       writers: dict[str, CogWriter],
                       thread_env: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext) -> int:
    """The window loop. With ``params.threads`` > 1, windows are computed in a thread pool (each
    thread with its own dataset handles; GDAL decoding and numpy sorting release the GIL) while
    this thread writes results in order. Returns the number of pixels with a valid observation."""
    windows = list(block_windows(grid.height, grid.width, params.window_size))
    local = threading.local()
    opened: list[list[ProductWindowReader]] = []
    lock = threading.Lock()

    def work(window: rasterio.windows.Window) -> dict[str, np.ndarray]:
        with thread_env():  # GDAL options (S3 endpoint, credentials) are per thread
            if not hasattr(local, "readers"):
                local.readers = open_readers()
                with lock:
                    opened.append(local.readers)
            return compute_window(local.readers, window, params)

    valid_pixels = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, params.threads)) as pool:
            pending: dict[int, Future[dict[str, np.ndarray]]] = {}
            ahead = 2 * max(1, params.threads)  # bounded prefetch keeps memory per window
            for i in range(min(ahead, len(windows))):
                pending[i] = pool.submit(work, windows[i])
            for i, window in enumerate(windows):
                result = pending.pop(i).result()
                if i + ahead < len(windows):
                    pending[i + ahead] = pool.submit(work, windows[i + ahead])
                for name, arr in result.items():
                    writers[name].write(arr, window)
                valid_pixels += int((result["valid_count"] > 0).sum())
    finally:
        for readers in opened:
            for r in readers:
                r.close()
    return valid_pixels


def dequantise(stored: np.ndarray) -> np.ndarray:
    """uint16 composite band (reflectance x 10000, 0 = nodata) -> float32 reflectance, NaN nodata."""
    out = stored.astype("float32") / np.float32(BAND_SCALE)
    out[stored == 0] = np.nan
    return out


@dataclass
class CompositeReport:
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def composite(ctx: Context, tiles: list[str], seasons: list[Season], client: Any,
              params: CompositeParams | None = None, progress: bool = True) -> CompositeReport:
    """Build (or reuse) the composite of every tile x season as Dask tasks."""
    from distributed import as_completed
    from tqdm import tqdm

    params = params or CompositeParams.from_settings(ctx.settings)
    report = CompositeReport()
    futures: dict[Any, str] = {}
    for tile in tiles:
        for season in seasons:
            label = f"{tile} {season.name}"
            cid, products = lookup.composite_id_for(ctx, tile, season, params)
            if cid is None:
                report.missing.append(label)
                log.warning("%s: no catalogued products, composite skipped", label)
                continue
            if ctx.catalog.exists("composites", cid):
                report.reused.append(cid)
                continue
            fut = client.submit(build_composite, ctx.settings, tile, season, products, params,
                                key=task_key(f"composite-{cid}"), pure=False)
            futures[fut] = label
    bar = tqdm(total=len(futures), desc="composite", unit="composite", disable=not progress or not futures)
    for fut in as_completed(list(futures)):
        label = futures[fut]
        try:
            record = fut.result()
            ctx.catalog.upsert("composites", record)
            report.built.append(record["_id"])
        except LandcoverError as exc:
            report.failed[label] = str(exc)
            log.error("%s: %s", label, exc)
        bar.update(1)
    bar.close()
    return report
