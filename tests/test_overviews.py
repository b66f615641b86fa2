"""Overviews computed while writing (raster/overviews.py, CogWriter) against GDAL's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from landcoverpy.raster.cog import CogWriter, validate_cog
from landcoverpy.raster.grid import Grid, block_windows
from landcoverpy.raster.overviews import halve, level_shapes

BLOCK = 128


def grid(width: int, height: int) -> Grid:
    return Grid(crs="EPSG:32630", transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 4200000.0), width=width, height=height)


def landscape(rng: np.random.Generator, height: int, width: int, dtype: str) -> np.ndarray:
    """Smooth fields with noise and gaps, as composite layers look: uint16 reflectance x 10000
    (0 = nodata), float32 indices (NaN = nodata), uint8 counts."""
    rows, cols = np.mgrid[0:height, 0:width]
    field = np.sin(rows / 37.0) + np.cos(cols / 23.0) + 0.3 * rng.normal(size=(height, width))
    gaps = rng.random((height, width)) < 0.2
    gaps[: height // 5, : width // 3] = True  # a cloud-sized hole, whole 2 x 2 blocks without data
    if dtype == "uint16":
        out = np.clip(2000 + 900 * field, 1, 65535).astype("uint16")
        out[gaps] = 0
    elif dtype == "float32":
        out = (field / 3).astype("float32")
        out[gaps] = np.nan
    else:
        out = rng.integers(0, 13, size=(height, width)).astype("uint8")
    return out


def overview_levels(path: Path) -> list[np.ndarray]:
    with rasterio.open(path) as ds:
        factors = ds.overviews(1)
    levels = []
    for i in range(len(factors)):
        with rasterio.open(path, overview_level=i) as ds:
            levels.append(ds.read())
    return levels


def write(path: Path, data: np.ndarray, g: Grid, resampling: str, window: int, **kwargs) -> None:
    with CogWriter(
        path, g, str(data.dtype), overview_resampling=resampling, blocksize=BLOCK, tmp_dir=path.parent, **kwargs
    ) as w:
        for win in block_windows(g.height, g.width, window):
            w.write(data[win.toslices()], win)


def gdal_cog(path: Path, data: np.ndarray, g: Grid, resampling: str, nodata) -> None:
    """The COG GDAL's driver makes with its own overviews, from the same array."""
    src = path.with_suffix(".src.tif")
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=g.width,
        height=g.height,
        count=1,
        dtype=str(data.dtype),
        crs=g.crs,
        transform=g.affine,
        nodata=nodata,
        tiled=True,
        blockxsize=BLOCK,
        blockysize=BLOCK,
    ) as dst:
        dst.write(data[np.newaxis])
    rasterio.shutil.copy(
        src, path, driver="COG", BLOCKSIZE=str(BLOCK), OVERVIEW_RESAMPLING=resampling.upper(), COMPRESS="NONE"
    )


def test_level_shapes_halve_until_one_block_as_gdal() -> None:
    assert level_shapes(10980, 10980, 512) == [(5490, 5490), (2745, 2745), (1373, 1373), (687, 687), (344, 344)]
    assert level_shapes(512, 300, 512) == []
    assert level_shapes(513, 20, 512) == [(257, 10)]


@pytest.mark.parametrize(
    "dtype,resampling,nodata",
    [("uint16", "average", 0), ("float32", "average", float("nan")), ("uint8", "nearest", None)],
)
def test_levels_written_window_by_window_equal_gdals_overviews(
    tmp_path: Path, dtype: str, resampling: str, nodata
) -> None:
    """On a raster whose sides halve evenly down to the last level, every overview level of the
    COG written window by window equals the one GDAL computes from the whole raster: integer
    averages exactly (rounded half up), float averages to float32 rounding, NaN and nodata left
    out the same way, nearest the same pixels; the number of levels is GDAL's."""
    g = grid(8 * BLOCK, 6 * BLOCK)  # 1024 x 768: levels 512 x 384, 256 x 192, 128 x 96
    data = landscape(np.random.default_rng(3), g.height, g.width, dtype)
    ours, theirs = tmp_path / "ours.tif", tmp_path / "gdal.tif"
    write(ours, data, g, resampling, window=256, nodata=nodata)
    gdal_cog(theirs, data, g, resampling, nodata)
    a, b = overview_levels(ours), overview_levels(theirs)
    assert len(a) == len(b) == len(level_shapes(g.width, g.height, BLOCK)) == 3
    for mine, gdals in zip(a, b):
        assert mine.shape == gdals.shape
        if dtype == "float32":
            assert np.array_equal(np.isnan(mine), np.isnan(gdals))
            np.testing.assert_allclose(mine, gdals, rtol=1e-6, atol=1e-7, equal_nan=True)
        else:
            assert np.array_equal(mine, gdals)
    with rasterio.open(ours) as ds:
        assert np.array_equal(ds.read(1), data, equal_nan=dtype == "float32")
    assert validate_cog(ours)[0]


def test_odd_sizes_reduce_partial_blocks_and_windows_agree_with_the_whole(tmp_path: Path) -> None:
    """At odd sizes the last row and column of each level average what their partial block holds;
    reducing window by window gives exactly what reducing the whole raster level by level gives."""
    g = grid(1000, 777)
    data = landscape(np.random.default_rng(5), g.height, g.width, "uint16")
    path = tmp_path / "odd.tif"
    write(path, data, g, "average", window=256, nodata=0)
    expected, level = [], data
    for _ in level_shapes(g.width, g.height, BLOCK):
        level = halve(level, "average", 0)
        expected.append(level)
    got = overview_levels(path)
    assert [lv.shape[1:] for lv in got] == [lv.shape for lv in expected]
    for mine, exp in zip(got, expected):
        assert np.array_equal(mine[0], exp)
    last = data[-1, -2:].astype(float)  # 777 rows: the last level-1 row covers one row of the raster
    valid = last[last > 0]
    assert expected[0][-1, -1] == (np.floor(valid.mean() + 0.5) if valid.size else 0)


def test_halve_by_hand() -> None:
    a = np.array([[1, 2, 0], [4, 0, 6], [7, 8, 9]], dtype="uint16")
    # blocks: {1,2,4} -> 7/3 = 2.33 -> 2; {0,6} -> 6; {7,8} -> 7.5 -> 8 (half up); {9} -> 9
    assert halve(a, "average", 0).tolist() == [[2, 6], [8, 9]]
    f = np.array([[np.nan, np.nan], [np.nan, np.nan]], dtype="float32")
    assert np.isnan(halve(f, "average", float("nan"))).all()
    assert halve(a, "nearest", 0).tolist() == [[1, 0], [7, 9]]
    assert halve(a, "average", None).tolist() == [[2, 3], [8, 9]]  # without nodata 0 counts: 7/4, 6/2


def test_unaligned_windows_fall_back_to_gdals_overviews(tmp_path: Path) -> None:
    """Windows that cannot be reduced on their own (here 100 px, not a multiple of the 8 px three
    levels need) leave the overviews to GDAL: the COG is the same as GDAL's, metadata included."""
    g = grid(8 * BLOCK, 6 * BLOCK)
    data = landscape(np.random.default_rng(7), g.height, g.width, "float32")
    path = tmp_path / "unaligned.tif"
    write(path, data, g, "average", window=100, nodata=float("nan"))
    gdal_cog(tmp_path / "gdal.tif", data, g, "average", float("nan"))
    for mine, gdals in zip(overview_levels(path), overview_levels(tmp_path / "gdal.tif")):
        np.testing.assert_array_equal(mine, gdals)
    assert validate_cog(path)[0]


def test_metadata_and_files_are_the_same_either_way(tmp_path: Path) -> None:
    """Descriptions, tags, scale/offset, units and nodata reach the COG through the pyramid's VRT
    as they do without it, and the writer leaves nothing in its scratch folder."""
    g = grid(4 * BLOCK, 4 * BLOCK)
    data = landscape(np.random.default_rng(9), g.height, g.width, "uint16")
    meta = dict(
        nodata=0,
        descriptions=["B04 median reflectance x 10000"],
        tags={"tile": "30SVG", "season": "spring"},
        band_tags=[{"band": "B04"}],
        scales=[1e-4],
        offsets=[0.0],
        units=["1"],
        compress="ZSTD",
    )
    write(tmp_path / "pyramid.tif", data, g, "average", window=BLOCK, **meta)
    write(tmp_path / "gdal.tif", data, g, "AVERAGE", window=BLOCK, **meta)  # not lower case: GDAL's overviews
    with rasterio.open(tmp_path / "pyramid.tif") as a, rasterio.open(tmp_path / "gdal.tif") as b:
        assert a.overviews(1) == b.overviews(1) == [2, 4]
        assert (a.descriptions, a.scales, a.offsets, a.units, a.nodata) == (
            b.descriptions,
            b.scales,
            b.offsets,
            b.units,
            b.nodata,
        )
        assert a.tags() == b.tags() and a.tags(1) == b.tags(1) and a.tags()["tile"] == "30SVG"
        assert a.compression == b.compression and a.profile["blockxsize"] == BLOCK
    for mine, gdals in zip(overview_levels(tmp_path / "pyramid.tif"), overview_levels(tmp_path / "gdal.tif")):
        np.testing.assert_array_equal(mine, gdals)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gdal.tif", "pyramid.tif"]


def test_a_failed_write_leaves_no_scratch(tmp_path: Path) -> None:
    g = grid(4 * BLOCK, 4 * BLOCK)
    with pytest.raises(RuntimeError):
        with CogWriter(
            tmp_path / "x.tif", g, "uint16", nodata=0, overview_resampling="average", blocksize=BLOCK, tmp_dir=tmp_path
        ) as w:
            w.write(np.ones((BLOCK, BLOCK), "uint16"), Window(0, 0, BLOCK, BLOCK))
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
