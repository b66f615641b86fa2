"""Overviews computed while a raster is written window by window, instead of by GDAL afterwards.

GDAL's COG driver builds overviews by reading the whole full-resolution file back (decoding every
tile through its block cache) and averaging it level by level: on a full Sentinel-2 tile that was
most of a float32 composite layer's COG time (3.7 of 6.4 s) and the part that slowed most when two
workers wrote at once (memory traffic). Here each level is made from the window just computed,
while it is still in cache: level k is the 2 x 2 reduction of level k - 1, as GDAL's ``AVERAGE`` and
``NEAREST`` do (average of the valid pixels, rounded half up for integers, NaN and nodata left out;
nearest = the block's top-left pixel), each level ``ceil(n / 2)`` pixels on a side until it fits in
one COG block. The levels go into small tiled GeoTIFFs; the COG driver takes them as the source's
overviews through a VRT.

A window can be reduced on its own only when it starts on a multiple of 2^levels and its size is
one too (or it reaches the raster's edge): windows of 1024 px on a 10980 px tile (5 levels, 32 px)
are. :class:`Pyramid` says when a write is not aligned; the writer then lets GDAL build them.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numba
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from landcoverpy.raster.grid import Grid

RESAMPLINGS = ("average", "nearest")


def level_shapes(width: int, height: int, blocksize: int) -> list[tuple[int, int]]:
    """(width, height) of each overview level: halved (rounded up) until both fit in one block,
    the levels GDAL's COG driver makes by default."""
    shapes = []
    while width > blocksize or height > blocksize:
        width, height = math.ceil(width / 2), math.ceil(height / 2)
        shapes.append((width, height))
    return shapes


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _halve_average(src: np.ndarray, nodata: float, has_nodata: bool, integer: bool, out: np.ndarray) -> None:
    rows, cols = src.shape
    fill = nodata if has_nodata else np.nan
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            total = 0.0
            n = 0
            for di in range(2):
                r = 2 * i + di
                if r >= rows:
                    break
                for dj in range(2):
                    c = 2 * j + dj
                    if c >= cols:
                        break
                    v = np.float64(src[r, c])
                    if v != v or (has_nodata and v == nodata):
                        continue
                    total += v
                    n += 1
            if n == 0:
                out[i, j] = fill
            elif integer:
                out[i, j] = math.floor(total / n + 0.5)
            else:
                out[i, j] = total / n


def halve(band: np.ndarray, resampling: str, nodata: float | int | None) -> np.ndarray:
    """One level down: ``ceil(rows / 2)`` x ``ceil(cols / 2)``, each pixel the reduction of its
    (up to) 2 x 2 block of ``band`` (2-D)."""
    if resampling == "nearest":
        return np.ascontiguousarray(band[::2, ::2])
    if resampling != "average":
        raise ValueError(f"overview resampling {resampling!r} is not computed here (only {RESAMPLINGS})")
    out = np.empty(((band.shape[0] + 1) // 2, (band.shape[1] + 1) // 2), dtype=band.dtype)
    integer = np.dtype(band.dtype).kind in "iu"
    has_nodata = nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata))
    _halve_average(band, float(nodata) if has_nodata and nodata is not None else 0.0, has_nodata, integer, out)
    return out


class Pyramid:
    """The overview levels of one raster, written window by window next to it (``folder``)."""

    def __init__(self, folder: Path, grid: Grid, profile: dict[str, Any], resampling: str, blocksize: int) -> None:
        self.grid, self.resampling, self.nodata = grid, resampling, profile.get("nodata")
        self.shapes = level_shapes(grid.width, grid.height, blocksize)
        self.step = 2 ** len(self.shapes)
        self.paths = [folder / f"overview-{k + 1}.tif" for k in range(len(self.shapes))]
        self.aligned = True
        self._dsts = []
        for path, (w, h) in zip(self.paths, self.shapes):
            scale = rasterio.Affine.scale(grid.width / w, grid.height / h)
            self._dsts.append(
                rasterio.open(path, "w", **profile | {"width": w, "height": h, "transform": grid.affine @ scale})
            )

    def _fits(self, window: Window) -> bool:
        col, row, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
        return (
            col % self.step == 0
            and row % self.step == 0
            and (w % self.step == 0 or col + w == self.grid.width)
            and (h % self.step == 0 or row + h == self.grid.height)
        )

    def write(self, data: np.ndarray, window: Window) -> None:
        """Reduce a (bands, rows, cols) window into every level; a window that cannot be reduced
        on its own stops the pyramid (``aligned`` False: GDAL builds the overviews instead)."""
        if not self.aligned:
            return
        if not self._fits(window):
            self.aligned = False
            return
        level = data
        col, row = int(window.col_off), int(window.row_off)
        for dst in self._dsts:
            level = np.stack([halve(b, self.resampling, self.nodata) for b in level])
            col, row = col // 2, row // 2
            dst.write(level, window=Window(col, row, level.shape[2], level.shape[1]))

    def close(self) -> None:
        for dst in self._dsts:
            dst.close()
        self._dsts = []

    def source(self, raster: str | Path, vrt: Path) -> Path:
        """A VRT of ``raster`` whose bands list the levels as their overviews (what the COG
        driver copies instead of computing its own)."""
        rasterio.shutil.copy(str(raster), str(vrt), driver="VRT")
        tree = ET.parse(vrt)
        for band in tree.getroot().iter("VRTRasterBand"):
            for path in self.paths:
                ov = ET.SubElement(band, "Overview")
                name = ET.SubElement(ov, "SourceFilename", relativeToVRT="0")
                name.text = str(path.resolve())
                ET.SubElement(ov, "SourceBand").text = band.get("band", "1")
        tree.write(vrt)
        return vrt
