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

from landcoverpy.raster.grid import Grid


class GridReader:
    """Reads windows of one band of ``uri`` as if it were on ``grid``.

    When the source already is on the grid it is read directly; otherwise through a WarpedVRT
    (nearest neighbour by default, so no value mixes across nodata or class boundaries).
    """

    def __init__(self, uri: str, grid: Grid, resampling: Resampling = Resampling.nearest,
                 band: int = 1, src_nodata: float | None = None) -> None:
        self.uri, self.grid, self.resampling, self.band = uri, grid, resampling, band
        self._src: Any = rasterio.open(uri)
        self.nodata = src_nodata if src_nodata is not None else self._src.nodata
        if Grid.from_dataset(self._src).same_as(grid):
            self._reader: Any = self._src
        else:
            self._reader = WarpedVRT(
                self._src, crs=grid.crs, transform=grid.affine, width=grid.width, height=grid.height,
                resampling=resampling, src_nodata=self.nodata, nodata=self.nodata if self.nodata is not None else 0,
            )

    def read(self, window: Window) -> np.ndarray:
        return self._reader.read(self.band, window=window)

    def close(self) -> None:
        if self._reader is not self._src:
            self._reader.close()
        self._src.close()


@contextlib.contextmanager
def open_readers(uris: dict[str, str], grid: Grid, resampling: Resampling = Resampling.nearest) -> Iterator[dict[str, GridReader]]:
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
