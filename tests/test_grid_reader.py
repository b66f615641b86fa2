"""Reading a raster on another grid (raster/reading.py): the aligned integer-factor path gives
exactly what GDAL's nearest-neighbour warp gives, at any window, offset and edge; other grids
still go through the warp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from landcoverpy.raster.grid import Grid
from landcoverpy.raster.reading import GridReader, aligned_upsampling

X0, Y0 = 399960.0, 4200000.0


def _write(
    path: Path,
    res: float,
    shape: tuple[int, int],
    dtype: str,
    nodata: float | None,
    x0: float = X0,
    y0: float = Y0,
    seed: int = 0,
) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 12, size=shape).astype(dtype)  # class-like values, including 0
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=shape[1],
        height=shape[0],
        count=1,
        dtype=dtype,
        crs="EPSG:32630",
        transform=Affine(res, 0, x0, 0, -res, y0),
        nodata=nodata,
        tiled=True,
        blockxsize=128,
        blockysize=128,
    ) as dst:
        dst.write(data, 1)


def _warped(path: Path, grid: Grid, window: Window) -> np.ndarray:
    with (
        rasterio.open(path) as src,
        WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.affine,
            width=grid.width,
            height=grid.height,
            resampling=Resampling.nearest,
            src_nodata=src.nodata,
            nodata=src.nodata if src.nodata is not None else 0,
        ) as vrt,
    ):
        return vrt.read(1, window=window)


WINDOWS = [
    Window(0, 0, 256, 256),
    Window(1, 3, 255, 250),
    Window(101, 77, 300, 211),
    Window(380, 390, 220, 210),
    Window(0, 0, 600, 600),
]


@pytest.mark.parametrize(
    ("res", "dtype", "nodata", "shift"),
    [
        (20.0, "uint8", 0, (0, 0)),  # SCL on the 10 m grid
        (60.0, "uint16", 0, (0, 0)),  # a 60 m band
        (20.0, "uint16", None, (3, 7)),  # a grid starting inside the source, odd pixel offsets
        (20.0, "int16", -9999, (-5, -4)),  # a grid starting before the source: edges are nodata
        (10.0, "uint16", 0, (3, 7)),  # the same pixels, the grid a window inside the source (a tile's part)
        (10.0, "int16", -9999, (-5, -4)),  # the same pixels, the source a window inside the grid
    ],
)
def test_aligned_upsampling_is_the_nearest_warp(
    tmp_path: Path, res: float, dtype: str, nodata: float | None, shift: tuple[int, int]
) -> None:
    src = tmp_path / "src.tif"
    _write(src, res, (int(5000 // res) + 1, int(5000 // res) + 3), dtype, nodata)
    rows, cols = shift
    grid = Grid("EPSG:32630", (10.0, 0.0, X0 + 10 * cols, 0.0, -10.0, Y0 - 10 * rows), 600, 600)
    reader = GridReader(str(src), grid)
    try:
        assert reader._upsample is not None  # the fast path is taken
        for window in WINDOWS:
            got = reader.read(window)
            assert got.dtype == np.dtype(dtype) and got.shape == (window.height, window.width)
            np.testing.assert_array_equal(got, _warped(src, grid, window), err_msg=str(window))
            if np.dtype(dtype).kind == "u":  # a table indexed by the values, applied before repeating
                table = np.arange(np.iinfo(dtype).max + 1) % 3 == 1
                np.testing.assert_array_equal(
                    reader.read(window, lookup=table), table[_warped(src, grid, window)], err_msg=str(window)
                )
    finally:
        reader.close()


def test_other_grids_still_warp(tmp_path: Path) -> None:
    src = tmp_path / "src.tif"
    _write(src, 20.0, (100, 100), "uint8", 0, x0=X0 + 5.0)  # half a 10 m pixel off: not aligned
    grid = Grid("EPSG:32630", (10.0, 0.0, X0, 0.0, -10.0, Y0), 150, 150)
    assert aligned_upsampling(Grid.from_dataset(rasterio.open(src)), grid) is None
    reader = GridReader(str(src), grid)
    try:
        assert reader._upsample is None
        np.testing.assert_array_equal(reader.read(Window(0, 0, 150, 150)), _warped(src, grid, Window(0, 0, 150, 150)))
    finally:
        reader.close()
    coarse = Grid("EPSG:32630", (20.0, 0.0, X0, 0.0, -20.0, Y0), 50, 50)
    fine = Grid("EPSG:32630", (10.0, 0.0, X0, 0.0, -10.0, Y0), 100, 100)
    assert aligned_upsampling(coarse, fine) == (2, 0, 0)
    assert aligned_upsampling(fine, coarse) is None  # downsampling is the warp's job
    assert aligned_upsampling(Grid("EPSG:32631", coarse.transform, 50, 50), fine) is None
    assert aligned_upsampling(Grid("EPSG:32630", (15.0, 0.0, X0, 0.0, -15.0, Y0), 50, 50), fine) is None
    aligned = tmp_path / "aligned.tif"
    _write(aligned, 20.0, (100, 100), "uint16", 0)
    bil = GridReader(str(aligned), grid, Resampling.bilinear)  # only nearest takes the fast path
    try:
        assert bil._upsample is None
    finally:
        bil.close()
