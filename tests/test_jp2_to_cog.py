"""JPEG 2000 bands become tiled DEFLATE COGs at acquisition: valid COGs with the same pixels,
georeferencing and nodata, over several JP2 tile rows and partial edge tiles; a damaged JP2 is
an error that leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from landcoverpy.raster.cog import jp2_to_cog, validate_cog


def write_jp2(path: Path, data: np.ndarray, tile: int, nodata: int | None = None) -> None:
    with rasterio.open(
        path,
        "w",
        driver="JP2OpenJPEG",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs="EPSG:32618",
        transform=from_origin(399960, 4200000, 20, 20),
        nodata=nodata,
        QUALITY="100",
        REVERSIBLE="YES",
        BLOCKXSIZE=str(tile),
        BLOCKYSIZE=str(tile),
    ) as dst:
        dst.write(data, 1)


@pytest.mark.parametrize(("dtype", "shape", "tile"), [("uint16", (1300, 700), 256), ("uint8", (517, 1029), 512)])
def test_jp2_becomes_a_cog_with_the_same_pixels(tmp_path: Path, dtype: str, shape: tuple[int, int], tile: int) -> None:
    rng = np.random.default_rng(3)
    data = rng.gamma(2.0, 900, size=shape) if dtype == "uint16" else rng.integers(0, 12, size=shape)
    data = np.clip(data, 0, np.iinfo(dtype).max).astype(dtype)
    data[:40, :60] = 0  # nodata corner
    src, dst = tmp_path / "band.jp2", tmp_path / "out" / "band.tif"
    dst.parent.mkdir()
    write_jp2(src, data, tile, nodata=0)
    jp2_to_cog(src, dst)
    assert validate_cog(dst) == (True, [])
    with rasterio.open(dst) as cog, rasterio.open(src) as jp2:
        np.testing.assert_array_equal(cog.read(1), data)
        assert cog.crs == jp2.crs and cog.transform == jp2.transform and cog.nodata == 0
        assert cog.profile["tiled"] and cog.compression.value == "DEFLATE" and cog.overviews(1) == []
    assert sorted(p.name for p in dst.parent.iterdir()) == ["band.tif"]  # no temporary left


def test_a_damaged_jp2_leaves_nothing(tmp_path: Path) -> None:
    data = np.arange(600 * 600, dtype="uint16").reshape(600, 600)
    src = tmp_path / "band.jp2"
    write_jp2(src, data, 256)
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Exception):  # noqa: B017 - GDAL's own error; acquisition turns it into RasterError
        jp2_to_cog(src, out / "band.tif")
    assert list(out.iterdir()) == []
