"""Climate ancillaries from WorldClim 2.1-style folders and URLs, resampled onto a MODIS-like
grid: generated monthly rasters in WorldClim's layout (file names, geographic 30 arc-second grid,
nodata over the sea, a variable packed as the zip WorldClim distributes)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from landcoverpy.errors import InputValidationError
from landcoverpy.raster.ancillary import ancillary_layers, climate_ancillaries, resampling_for
from landcoverpy.raster.grid import Grid
from landcoverpy.sources.worldclim import extraterrestrial_radiation, hargreaves_daily, hargreaves_pet

RES = 1 / 120  # 30 arc-seconds
WEST, NORTH = -5.6, 38.3
SIZE = 96  # 0.8 degrees


def field(var: str, month: int, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Smooth, known fields: linear in lon/lat, so averaging and bilinear both keep them."""
    base = {"tavg": 12.0, "tmax": 18.0, "tmin": 6.0, "prec": 40.0}[var]
    season = np.cos(2 * np.pi * (month - 7) / 12)
    if var == "prec":
        return base - 25 * season + 30 * (lon - WEST)
    return base + 8 * season - 4 * (lat - 37.9)


def write_worldclim(
    root: Path, zipped: tuple[str, ...] = ("prec",), west: float = WEST, north: float = NORTH, size: int = SIZE
) -> None:
    """WorldClim 2.1-named monthly layers of :func:`field` over ``size`` x ``size`` 30" cells
    from (``west``, ``north``), the last four columns sea."""
    root.mkdir(parents=True, exist_ok=True)
    transform = Affine(RES, 0, west, 0, -RES, north)
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    lon, lat = west + cols * RES, north - rows * RES
    for var in ("tavg", "tmax", "tmin", "prec"):
        names = []
        for month in range(1, 13):
            values = field(var, month, lon, lat).astype("float32")
            values[:, -4:] = -3.4e38  # sea in the east, as WorldClim's nodata
            name = f"wc2.1_30s_{var}_{month:02d}.tif"
            with rasterio.open(
                root / name,
                "w",
                driver="GTiff",
                width=size,
                height=size,
                count=1,
                dtype="float32",
                crs="EPSG:4326",
                transform=transform,
                nodata=-3.4e38,
            ) as dst:
                dst.write(values, 1)
            names.append(name)
        if var in zipped:
            with zipfile.ZipFile(root / f"wc2.1_30s_{var}.zip", "w") as zf:
                for name in names:
                    zf.write(root / name, name)
                    (root / name).unlink()


def modis_like_grid(res: float = 460.0, n: int = 24) -> Grid:
    return Grid("EPSG:32630", tuple(Affine(res, 0, 300000.0, 0, -res, 4200000.0))[:6], n, n)


def expected(grid: Grid) -> dict[str, np.ndarray]:
    from pyproj import Transformer

    rr, cc = np.mgrid[0 : grid.height, 0 : grid.width]
    xs, ys = grid.affine @ (cc + 0.5, rr + 0.5)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    monthly = {v: np.stack([field(v, m, lon, lat) for m in range(1, 13)]) for v in ("tavg", "tmax", "tmin", "prec")}
    return {
        "precipitation": monthly["prec"].sum(0),
        "tmean": monthly["tavg"].mean(0),
        "tmax": monthly["tmax"].mean(0),
        "tmin": monthly["tmin"].mean(0),
        "pet": hargreaves_pet(monthly["tavg"], monthly["tmax"], monthly["tmin"], lat),
    }


def test_fao56_extraterrestrial_radiation_example() -> None:
    # Allen et al. (1998), FAO Irrigation and Drainage Paper 56, Example 8: 3 September (day 246)
    # at 20 deg S -> Ra = 32.2 MJ m-2 day-1
    assert float(extraterrestrial_radiation(np.array(-20.0), 246)) == pytest.approx(32.2, abs=0.1)


def test_hargreaves_equation_of_fao56() -> None:
    # FAO-56 eq. 52, ET0 = 0.0023 (Tmean + 17.8) (Tmax - Tmin)^0.5 Ra, with Ra = 32.2 MJ m-2 day-1
    # (Example 8) = 13.14 mm day-1 (x 0.408, FAO-56 eq. 20), Tmax 25, Tmin 19, Tmean 22 degC:
    # 0.0023 x 39.8 x 2.449 x 13.14 = 2.95 mm day-1 (worked by hand from the published equation)
    got = hargreaves_daily(np.array(22.0), np.array(25.0), np.array(19.0), np.array(32.2))
    assert float(got) == pytest.approx(2.95, abs=0.01)
    # no diurnal range: no evaporation
    assert float(hargreaves_daily(np.array(15.0), np.array(15.0), np.array(15.0), np.array(32.2))) == 0


def test_annual_hargreaves_pet_sums_the_months() -> None:
    """The annual PET is each month's days x its daily value (FAO-56 eq. 52) with Ra (eq. 21) of
    the month's 15th day, as FAO-56 Annex 2 tabulates Ra: day 15 of the year... day 349."""
    lat = np.array([40.0])
    tavg = np.linspace(5, 25, 12)[:, None]
    tmax, tmin = tavg + 6, tavg - 6
    mid_days = [15, 46, 74, 105, 135, 166, 196, 227, 258, 288, 319, 349]
    lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    want = sum(
        n * float(hargreaves_daily(tavg[m], tmax[m], tmin[m], extraterrestrial_radiation(lat, d))[0])
        for m, (d, n) in enumerate(zip(mid_days, lengths, strict=True))
    )
    assert float(hargreaves_pet(tavg, tmax, tmin, lat)[0]) == pytest.approx(want, rel=1e-5)


def test_climate_normals_on_the_grid_from_a_folder(tmp_path: Path) -> None:
    write_worldclim(tmp_path / "wc")
    grid = modis_like_grid()
    values, names = ancillary_layers(climate_ancillaries(str(tmp_path / "wc")), grid)
    assert names == ["longitude", "latitude", "precipitation", "pet", "tmean", "tmax", "tmin"]
    want = expected(grid)
    for i, name in enumerate(names[2:], start=2):
        got = values[:, i].reshape(grid.height, grid.width)
        np.testing.assert_allclose(got, want[name], rtol=0.01, atol=0.05, err_msg=name)
    assert 600 < want["pet"].mean() < 1600  # mm/year: a Mediterranean inland value


def test_resampling_follows_the_source_resolution(tmp_path: Path) -> None:
    write_worldclim(tmp_path / "wc", zipped=())
    path = str(tmp_path / "wc" / "wc2.1_30s_tavg_01.tif")
    assert resampling_for(path, modis_like_grid(460.0)) == Resampling.bilinear  # ~0.93 km over 460 m pixels
    assert resampling_for(path, modis_like_grid(2000.0, 6)) == Resampling.average  # finer than 2 km pixels


def test_missing_layers_and_the_sea_are_named(tmp_path: Path) -> None:
    write_worldclim(tmp_path / "wc")
    (tmp_path / "wc" / "wc2.1_30s_tmax_07.tif").unlink()
    with pytest.raises(InputValidationError, match="no wc2.1_30s_tmax_07.tif"):
        ancillary_layers(climate_ancillaries(str(tmp_path / "wc")), modis_like_grid())
    east = Grid("EPSG:32630", tuple(Affine(460.0, 0, 360000.0, 0, -460.0, 4200000.0))[:6], 24, 24)  # reaches the sea
    with pytest.raises(InputValidationError, match="ancillary raster precipitation .* does not cover the area"):
        ancillary_layers({"precipitation": climate_ancillaries(str(tmp_path / "wc"))["precipitation"]}, east)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_climate_normals_from_a_url(tmp_path: Path) -> None:
    write_worldclim(tmp_path / "wc", zipped=())
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path / "wc")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        grid = modis_like_grid()
        specs = climate_ancillaries(f"http://127.0.0.1:{port}", "30s")
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            remote, _ = ancillary_layers({"tmean": specs["tmean"]}, grid)
        local, _ = ancillary_layers({"tmean": climate_ancillaries(str(tmp_path / "wc"))["tmean"]}, grid)
        np.testing.assert_allclose(remote, local)
    finally:
        server.terminate()
        server.wait(10)
