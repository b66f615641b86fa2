"""Cloud-Optimized GeoTIFF writing, window by window, with validation (rio-cogeo).

:class:`CogWriter` writes windows into a temporary tiled GeoTIFF, and (for average and nearest
overviews without a colour table) each window's overview levels as it goes
(:mod:`landcoverpy.raster.overviews`); then GDAL's COG driver makes the COG (internal tiling,
those overviews or its own, nodata, band descriptions, colour table, scale/offset, tags) and
rio-cogeo's ``cog_validate`` checks it. Memory is bounded by the window size, not the raster size.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from landcoverpy.errors import RasterError
from landcoverpy.pipeline.tasks import task_threads
from landcoverpy.raster.grid import Grid
from landcoverpy.raster.overviews import RESAMPLINGS, Pyramid

log = logging.getLogger(__name__)

COG_BLOCKSIZE = 512


class CogWriter:
    def __init__(
        self,
        path: str | Path,
        grid: Grid,
        dtype: str,
        count: int = 1,
        nodata: float | int | None = None,
        descriptions: list[str] | None = None,
        colormap: dict[int, tuple[int, int, int, int]] | None = None,
        tags: dict[str, str] | None = None,
        band_tags: list[dict[str, str]] | None = None,
        scales: list[float] | None = None,
        offsets: list[float] | None = None,
        units: list[str] | None = None,
        overview_resampling: str = "nearest",
        blocksize: int = COG_BLOCKSIZE,
        tmp_dir: str | Path | None = None,
        compress: str = "DEFLATE",
    ) -> None:
        self.path = Path(path)
        self.grid, self.dtype, self.count, self.nodata = grid, dtype, count, nodata
        self.descriptions, self.colormap, self.tags = descriptions, colormap, tags or {}
        self.band_tags = band_tags
        self.scales, self.offsets, self.units = scales, offsets, units
        self.overview_resampling, self.blocksize = overview_resampling, blocksize
        self.tmp_dir = tmp_dir
        self.compress = compress
        self._tmp: str | None = None
        self._dst: Any = None
        self._pyramid: Pyramid | None = None

    def __enter__(self) -> CogWriter:
        self._tmp = tempfile.mkdtemp(suffix=".cog", dir=self.tmp_dir)
        try:
            return self._open()
        except BaseException:
            if self._dst is not None:
                self._dst.close()
            if self._pyramid is not None:
                self._pyramid.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def _open(self) -> CogWriter:
        profile = {
            "driver": "GTiff",
            "count": self.count,
            "dtype": self.dtype,
            "crs": self.grid.crs,
            "nodata": self.nodata,
            "tiled": True,
            "blockxsize": self.blocksize,
            "blockysize": self.blocksize,
            # the intermediate files only need to be small and fast; the COG gets its own compression
            "compress": "ZSTD",
            "zstd_level": 1,
            "BIGTIFF": "IF_SAFER",
        }
        if self.overview_resampling in RESAMPLINGS and not self.colormap:
            assert self._tmp is not None
            self._pyramid = Pyramid(Path(self._tmp), self.grid, profile, self.overview_resampling, self.blocksize)
        if self.colormap:
            profile["photometric"] = "palette"
        self._dst = rasterio.open(
            self._source,
            "w",
            **profile | {"width": self.grid.width, "height": self.grid.height, "transform": self.grid.affine},
        )
        for i, desc in enumerate(self.descriptions or [], start=1):
            self._dst.set_band_description(i, desc)
        if self.colormap:  # a paletted band from the start: overviews are computed with the palette
            self._dst.write_colormap(1, self.colormap)
        if self.tags:
            self._dst.update_tags(**self.tags)
        for i, tags in enumerate(self.band_tags or [], start=1):
            self._dst.update_tags(i, **tags)
        # GDAL band scale/offset: readers (QGIS, rioxarray mask_and_scale) get physical values
        if self.scales is not None:
            self._dst.scales = tuple(self.scales)
        if self.offsets is not None:
            self._dst.offsets = tuple(self.offsets)
        if self.units is not None:
            self._dst.units = tuple(self.units)
        return self

    @property
    def _source(self) -> Path:
        assert self._tmp is not None
        return Path(self._tmp) / "raster.tif"

    def write(self, data: np.ndarray, window: Window) -> None:
        arr = (data if data.ndim == 3 else data[np.newaxis]).astype(self.dtype, copy=False)
        self._dst.write(arr, window=window)
        if self._pyramid is not None:
            self._pyramid.write(arr, window)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._dst.close()
            if self._pyramid is not None:
                self._pyramid.close()
            if exc_type is None:
                src, overviews = self._source, "AUTO"
                if self._pyramid is not None and self._pyramid.aligned and self._pyramid.paths:
                    src, overviews = self._pyramid.source(src, src.with_suffix(".vrt")), "FORCE_USE_EXISTING"
                translate_to_cog(
                    src,
                    self.path,
                    self.dtype,
                    self.overview_resampling,
                    self.blocksize,
                    compress=self.compress,
                    overviews=overviews,
                )
        finally:
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)


def gdal_threads() -> str:
    """Threads GDAL may use to compress or decode: the process's share of the machine. A local
    Dask cluster gives each worker cores / workers through GDAL_NUM_THREADS (measured on the
    composite stage with 2 workers on 2 cores: 1 thread each is 5 % faster than both taking
    every core). In a worker started otherwise (`dask worker` in the compose deployment, a
    user's cluster) without GDAL_NUM_THREADS, each task gets cores / the worker's threads, since
    that many tasks compress at once (every core for each of them oversubscribed the machine
    that many times); outside a worker every core."""

    if os.environ.get("GDAL_NUM_THREADS"):
        return os.environ["GDAL_NUM_THREADS"]
    threads = task_threads()
    return str(max(1, (os.cpu_count() or 1) // threads)) if threads else "ALL_CPUS"


def translate_to_cog(
    src: str | Path,
    dst: str | Path,
    dtype: str,
    overview_resampling: str = "nearest",
    blocksize: int = COG_BLOCKSIZE,
    overviews: str = "AUTO",
    compress: str = "DEFLATE",
) -> None:
    """GDAL's COG driver: tiling, compression (DEFLATE, which every GeoTIFF reader decodes, for
    what people open; ZSTD at level 1 for the workflow's own intermediate layers such as
    composites: the same size on them, twice as fast to write and 1.5x to read, readable by GDAL
    >= 2.3 and so QGIS), overviews computed with the band's colour table, nodata, descriptions,
    scale/offset and tags copied; then rio-cogeo validates the result. (The overviews
    rio-cogeo's ``cog_translate`` computes on paletted bands draw GDAL's "palette index raster
    bands without a palette" warning.) ``overviews``: the driver's option: ``AUTO`` (GDAL
    computes them), ``NONE``, or ``FORCE_USE_EXISTING`` (``src`` has them, a
    :class:`~landcoverpy.raster.overviews.Pyramid`'s VRT: copied, not recomputed)."""

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp_dst = dst.parent / f".{dst.name}.part"
    predictor = "3" if np.dtype(dtype).kind == "f" else "2"
    try:
        with rasterio.Env(GDAL_NUM_THREADS=gdal_threads()):
            rasterio.shutil.copy(
                str(src),
                str(tmp_dst),
                driver="COG",
                COMPRESS=compress,
                PREDICTOR=predictor,
                **({"LEVEL": "1"} if compress == "ZSTD" else {}),
                BLOCKSIZE=str(blocksize),
                OVERVIEW_RESAMPLING=overview_resampling.upper(),
                BIGTIFF="IF_SAFER",
                NUM_THREADS=gdal_threads(),
                OVERVIEWS=overviews,
            )
        valid, errors = validate_cog(tmp_dst)
        if not valid:
            raise RasterError(f"{dst.name} is not a valid Cloud-Optimized GeoTIFF: {errors}")
        os.replace(tmp_dst, dst)
    finally:
        tmp_dst.unlink(missing_ok=True)


def jp2_to_cog(src: str | Path, dst: str | Path) -> None:
    """A JPEG 2000 raster as a tiled DEFLATE COG without overviews (lossless both ways). The JP2 is
    decoded in strips of whole JP2 tile rows, each tile once, on all GDAL threads, into an
    uncompressed tiled GeoTIFF, which GDAL's COG driver then compresses: 10 s for a 10980 x 10980
    band on 2 cores, where letting the COG driver read the JP2 itself takes 17 s (it decodes JP2
    tiles again for every block row). Memory: one strip (22 MB for a 10 m band)."""
    dst = Path(dst)
    raw = dst.parent / f".{dst.name}.raw.tif"
    try:
        with rasterio.Env(GDAL_NUM_THREADS=gdal_threads()), rasterio.open(src) as jp2:
            profile = jp2.profile | {
                "driver": "GTiff",
                "tiled": True,
                "blockxsize": COG_BLOCKSIZE,
                "blockysize": COG_BLOCKSIZE,
                "compress": "none",
                "BIGTIFF": "IF_SAFER",
            }
            for key in ("QUALITY", "REVERSIBLE", "YCBCR420", "quality", "reversible"):
                profile.pop(key, None)
            strip = max(jp2.block_shapes[0][0], COG_BLOCKSIZE)
            with rasterio.open(raw, "w", **profile) as out:
                for row in range(0, jp2.height, strip):
                    window = Window(0, row, jp2.width, min(strip, jp2.height - row))
                    out.write(jp2.read(window=window), window=window)
            dtype = jp2.dtypes[0]
        translate_to_cog(raw, dst, dtype, overviews="NONE")
    finally:
        raw.unlink(missing_ok=True)


def write_cog(path: str | Path, data: np.ndarray, grid: Grid, **kwargs: Any) -> None:
    """Write a whole (small) array as a COG."""
    arr = data if data.ndim == 3 else data[np.newaxis]
    with CogWriter(path, grid, str(arr.dtype), count=arr.shape[0], **kwargs) as w:
        w.write(arr, Window(0, 0, grid.width, grid.height))


def validate_cog(path: str | Path) -> tuple[bool, list[str]]:

    valid, errors, _ = cog_validate(str(path), quiet=True)
    return bool(valid), list(errors)
