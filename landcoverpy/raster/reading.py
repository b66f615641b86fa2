"""Reading windows of a raster on a target grid (reprojecting/resampling on the fly)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from landcoverpy.raster.grid import Grid, _same_crs
from landcoverpy.raster.pixelkernels import upsample_into

# GDAL's block cache defaults to 5 % of RAM (1.2 GB on a 24 GB machine) per process; window-by-
# window readers (composites, training samples, classification blocks) reuse few decoded tiles,
# so the cache is bounded and memory follows the windows.
GDAL_CACHE_MB = 256


class GridReader:
    """Reads windows of one band of ``uri`` as if it were on ``grid``.

    When the source already is on the grid it is read directly. When it is the same grid at an
    integer multiple of the pixel size, aligned on it (a Sentinel-2 20 m or 60 m band or the SCL
    layer on the 10 m grid; or the same pixels over a larger or offset extent) and nearest
    neighbour is asked for, the covering source window is read and each source pixel repeated: what
    GDAL's nearest-neighbour warp gives on such grids (every target pixel centre lies inside exactly
    one source pixel), without the warper's cost
    (measured 15-90x faster per window). Otherwise through a WarpedVRT (nearest neighbour by
    default, so no value mixes across nodata or class boundaries).
    """

    def __init__(
        self,
        uri: str,
        grid: Grid,
        resampling: Resampling = Resampling.nearest,
        band: int = 1,
        src_nodata: float | None = None,
    ) -> None:
        self.uri, self.grid, self.resampling, self.band = uri, grid, resampling, band
        self._src: Any = rasterio.open(uri)
        self.nodata = src_nodata if src_nodata is not None else self._src.nodata
        self.dtype = np.dtype(self._src.dtypes[band - 1])
        self._upsample: tuple[int, int, int] | None = None  # (factor, row offset, col offset)
        source = Grid.from_dataset(self._src)
        if source.same_as(grid):
            self._reader: Any = self._src
            return
        if resampling == Resampling.nearest:
            self._upsample = aligned_upsampling(source, grid)
        if self._upsample is not None:
            self._reader = self._src
        else:
            self._reader = WarpedVRT(
                self._src,
                crs=grid.crs,
                transform=grid.affine,
                width=grid.width,
                height=grid.height,
                resampling=resampling,
                src_nodata=self.nodata,
                nodata=self.nodata if self.nodata is not None else 0,
            )

    def read(self, window: Window, lookup: np.ndarray | None = None) -> np.ndarray:
        """The grid's pixels in ``window``. ``lookup``: a table indexed by the raster's (integer)
        values, e.g. a class -> masked table; the result is ``lookup[values]``, mapped on the
        source's pixels before they are repeated (a 20 m layer: a quarter of the lookups)."""
        if self._upsample is None:
            values = self._reader.read(self.band, window=window)
            return values if lookup is None else lookup[values]
        factor, row_off, col_off = self._upsample
        r0, c0 = int(window.row_off), int(window.col_off)
        rows = (np.arange(r0, r0 + int(window.height)) + row_off) // factor
        cols = (np.arange(c0, c0 + int(window.width)) + col_off) // factor
        inside_r = (rows >= 0) & (rows < self._src.height)
        inside_c = (cols >= 0) & (cols < self._src.width)
        whole = bool(inside_r.all() and inside_c.all())
        if not whole:  # a window over the source's edge: nodata there
            fill = self.nodata if self.nodata is not None else 0
            out = np.full((len(rows), len(cols)), fill, dtype=self.dtype)
            if lookup is not None:
                out = lookup[out]
            if not inside_r.any() or not inside_c.any():
                return out
        sr0, sr1 = int(rows[inside_r].min()), int(rows[inside_r].max()) + 1
        sc0, sc1 = int(cols[inside_c].min()), int(cols[inside_c].max()) + 1
        block = self._src.read(self.band, window=Window(sc0, sr0, sc1 - sc0, sr1 - sr0))
        if lookup is not None:
            block = lookup[block]
        if whole and factor == 1:  # the same grid, offset (a product's window of its tile, or a larger product)
            return block
        if whole:  # the usual case: each source pixel repeated, in one compiled pass
            dr, dc = r0 + row_off - sr0 * factor, c0 + col_off - sc0 * factor
            up = np.empty((len(rows), len(cols)), dtype=block.dtype)
            upsample_into(block, factor, dr, dc, up)
            return up
        out[np.ix_(inside_r, inside_c)] = block[np.ix_(rows[inside_r] - sr0, cols[inside_c] - sc0)]
        return out

    def close(self) -> None:
        if self._reader is not self._src:
            self._reader.close()
        self._src.close()


def aligned_upsampling(source: Grid, grid: Grid, tol: float = 1e-6) -> tuple[int, int, int] | None:
    """(factor, row offset, col offset) when ``grid`` is ``source`` cut into factor x factor
    pixels (factor 1: the same pixels, the grids offset from one another): same CRS, north-up,
    source pixel size an integer multiple of the grid's, and the grid's
    origin on a grid-pixel step from the source's (target row r lies in source row
    (r + row offset) // factor). None otherwise."""
    sa, sb, sc, sd, se, sf = source.transform[:6]
    ga, gb, gc, gd, ge, gf = grid.transform[:6]
    if not _same_crs(source.crs, grid.crs) or any(abs(v) > tol for v in (sb, sd, gb, gd)):
        return None
    if ga <= 0 or ge >= 0 or sa <= 0 or se >= 0:
        return None
    factor = sa / ga
    if abs(factor - round(factor)) > tol or round(factor) < 1 or abs(se / ge - factor) > tol * factor:
        return None
    col_off, row_off = (gc - sc) / ga, (gf - sf) / ge
    if abs(col_off - round(col_off)) > 1e-4 or abs(row_off - round(row_off)) > 1e-4:
        return None
    return int(round(factor)), int(round(row_off)), int(round(col_off))


@contextlib.contextmanager
def open_readers(
    uris: dict[str, str], grid: Grid, resampling: Resampling = Resampling.nearest
) -> Iterator[dict[str, GridReader]]:
    readers: dict[str, GridReader] = {}
    try:
        for name, uri in uris.items():
            readers[name] = GridReader(uri, grid, resampling)
        yield readers
    finally:
        for r in readers.values():
            r.close()


def expand_window(window: Window, halo: int, grid: Grid) -> tuple[Window, tuple[slice, slice]]:
    """``window`` grown by ``halo`` pixels (clipped to the grid), and the slices that cut the
    original window back out of the grown one."""
    r0 = max(0, int(window.row_off) - halo)
    c0 = max(0, int(window.col_off) - halo)
    r1 = min(grid.height, int(window.row_off + window.height) + halo)
    c1 = min(grid.width, int(window.col_off + window.width) + halo)
    grown = Window(c0, r0, c1 - c0, r1 - r0)
    rs = slice(int(window.row_off) - r0, int(window.row_off) - r0 + int(window.height))
    cs = slice(int(window.col_off) - c0, int(window.col_off) - c0 + int(window.width))
    return grown, (rs, cs)
