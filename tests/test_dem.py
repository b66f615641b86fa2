"""DEM: slope/aspect on arrays with known answers, and the DEM stage on the real pysheds DEM
(HydroSHEDS, Dallas-Fort Worth) reprojected onto a UTM 30 m grid, checked against an independent
per-pixel implementation of Horn's formula."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client, LocalCluster
from rasterio.enums import Resampling
from rasterio.warp import reproject

from landcoverpy.context import Context
from landcoverpy.pipeline.dem import build_dem, dem_stage, ensure_dem_tiles
from landcoverpy.raster.cog import validate_cog
from landcoverpy.raster.grid import Grid
from landcoverpy.raster.terrain import aspect_degrees, slope_degrees
from landcoverpy.sources.dem import DEMSource, aster_tile_name, aster_tiles_for_bounds
from tests.conftest import make_settings, shared_data


def test_plane_slope_and_aspect_are_exact() -> None:
    rows, cols = np.mgrid[0:20, 0:30].astype(float)
    cell = 10.0
    x, y = cols * cell, -rows * cell  # y grows northwards, rows southwards
    z = 0.3 * x + 0.1 * y + 100  # rises to the east and north: faces south-west
    slope = slope_degrees(z, cell)
    aspect = aspect_degrees(z, cell)
    assert np.isnan(slope[0]).all() and np.isnan(slope[:, -1]).all()
    np.testing.assert_allclose(slope[1:-1, 1:-1], math.degrees(math.atan(math.hypot(0.3, 0.1))), rtol=1e-6)
    expected_aspect = math.degrees(math.atan2(-0.3, -0.1)) % 360  # downslope direction, from north
    np.testing.assert_allclose(aspect[1:-1, 1:-1], expected_aspect, rtol=1e-6)
    assert 180 < expected_aspect < 270
    assert (aspect_degrees(np.full((5, 5), 7.0), cell)[1:-1, 1:-1] == -1).all()


def test_aster_tile_names() -> None:
    assert aster_tile_name(37, -76) == "ASTGTMV003_N37W076"
    assert aster_tile_name(-1, 5) == "ASTGTMV003_S01E005"
    assert aster_tiles_for_bounds(-75.7, 37.5, -75.2, 38.1) == ["ASTGTMV003_N37W076", "ASTGTMV003_N38W076"]


def horn_slope_loop(z: np.ndarray, r: int, c: int, cell: float) -> float:
    """Horn's slope at one pixel, written out independently of the vectorised code."""
    w = z[r - 1 : r + 2, c - 1 : c + 2]
    dzdx = ((w[0, 2] + 2 * w[1, 2] + w[2, 2]) - (w[0, 0] + 2 * w[1, 0] + w[2, 0])) / (8 * cell)
    dzdy = ((w[2, 0] + 2 * w[2, 1] + w[2, 2]) - (w[0, 0] + 2 * w[0, 1] + w[0, 2])) / (8 * cell)
    return math.degrees(math.atan(math.sqrt(dzdx**2 + dzdy**2)))


def test_dem_stage_on_real_dem(tmp_path: Path) -> None:
    dem_file = shared_data("pysheds-dem") / "dem.tif"
    source_dir = tmp_path / "aster"
    source_dir.mkdir()
    shutil.copy(dem_file, source_dir / "ASTGTMV003_N32W098_dem.tif")  # the tile covering the crop
    settings = make_settings(tmp_path)
    ctx = Context.open(settings)
    # a UTM 14N 30 m grid inside the DEM's extent (as a Sentinel-2 tile sub-grid would be)
    grid = Grid("EPSG:32614", (30.0, 0.0, 643000.0, 0.0, -30.0, 3630000.0), 400, 380)
    sources = ensure_dem_tiles(ctx, DEMSource(str(source_dir)), ["ASTGTMV003_N32W098", "ASTGTMV003_N33W098"])
    assert [s["key"] for s in sources] == ["ASTGTMV003_N32W098_dem.tif"]  # the missing one is skipped
    rec = build_dem(settings, "14SPB", grid, sources, window_size=128).to_doc()
    layers = {}
    for name, loc in rec["layers"].items():
        path = ctx.store.raster_uri(loc["bucket"], loc["key"])
        assert validate_cog(path)[0]
        with rasterio.open(path) as src:
            layers[name] = src.read(1)
    with rasterio.open(dem_file) as src:
        whole = np.full(grid.shape, np.nan, "float32")
        reproject(
            rasterio.band(src, 1),
            whole,
            src_nodata=src.nodata,
            dst_transform=grid.affine,
            dst_crs=grid.crs,
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    # GDAL's approximate warp transformer makes windowed and whole-grid bilinear reprojection
    # differ by a few centimetres; well below the DEM's own precision (1 m)
    np.testing.assert_allclose(layers["elevation"], whole, atol=0.5)
    assert 140 < np.nanmin(whole) and np.nanmax(whole) < 300
    rng = np.random.default_rng(0)
    elevation = layers["elevation"].astype(float)
    checked = 0
    for r, c in zip(rng.integers(1, grid.height - 1, 400), rng.integers(1, grid.width - 1, 400)):
        if r % 128 in (0, 127) or c % 128 in (0, 127):
            continue  # next to a window border the halo came from another window's warp
        assert layers["slope"][r, c] == pytest.approx(horn_slope_loop(elevation, r, c, 30.0), abs=1e-4)
        checked += 1
    assert checked > 300
    # windows were stitched with a halo: no seams at window borders (row 128 is a border)
    assert np.isfinite(layers["slope"][127:130, 1:-1]).all()
    # the tile's outermost pixels have a slope too: their halo is read from the DEM beyond the grid
    bigger = Grid(grid.crs, (30.0, 0.0, 643000.0 - 30.0, 0.0, -30.0, 3630000.0 + 30.0), grid.width + 2, grid.height + 2)
    with rasterio.open(dem_file) as src:
        around = np.full(bigger.shape, np.nan, "float32")
        reproject(
            rasterio.band(src, 1),
            around,
            src_nodata=src.nodata,
            dst_transform=bigger.affine,
            dst_crs=bigger.crs,
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    ring = (
        [(0, c) for c in range(0, grid.width, 7)]
        + [(grid.height - 1, c) for c in range(0, grid.width, 7)]
        + [(r, 0) for r in range(0, grid.height, 7)]
        + [(r, grid.width - 1) for r in range(0, grid.height, 7)]
    )
    # (within the warp's few centimetres; a halo that repeated the edge pixel would be off by degrees)
    for r, c in ring:
        assert layers["slope"][r, c] == pytest.approx(
            horn_slope_loop(around.astype(float), r + 1, c + 1, 30.0), abs=0.25
        )
    assert np.isfinite(layers["aspect"][[0, -1], :]).all() and np.isfinite(layers["aspect"][:, [0, -1]]).all()
    # a different method (central differences) agrees in the large
    gy, gx = np.gradient(whole.astype(float), 30.0)
    central = np.degrees(np.arctan(np.hypot(gx, gy)))
    ok = np.isfinite(layers["slope"]) & np.isfinite(central)
    assert np.corrcoef(layers["slope"][ok], central[ok])[0, 1] > 0.9
    valid_aspect = layers["aspect"][np.isfinite(layers["aspect"])]
    assert valid_aspect.min() >= -1 and valid_aspect.max() < 360


def test_dem_stage_skips_tiles_without_grid(tmp_path: Path) -> None:
    ctx = Context.open(make_settings(tmp_path))
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        status = dem_stage(ctx, ["30SUF"], DEMSource(str(tmp_path)), client)
    assert status == {"30SUF": "skipped: no products or composites to take the grid from"}


def test_dem_layers_become_features(tmp_path: Path) -> None:
    """With DEM_SOURCE set, a tile's feature sources gain dem_elevation/slope/aspect, read on the
    composites' grid."""
    import datetime as dt

    from affine import Affine
    from rasterio.windows import Window

    from landcoverpy.assets.lookup import feature_sources
    from landcoverpy.assets.params import CompositeParams
    from landcoverpy.features import FeatureReader, feature_names
    from landcoverpy.inputs import Season
    from landcoverpy.pipeline.acquire import acquire
    from landcoverpy.pipeline.composites import composite
    from landcoverpy.sources.local import LocalProvider
    from tests.synthetic import make_l2a_product

    season = Season("spring", dt.date(2021, 3, 1), dt.date(2021, 5, 31))
    make_l2a_product(tmp_path / "src", "30SUF", dt.datetime(2021, 3, 5, 11), 60, seed=1)
    aster = tmp_path / "aster"
    aster.mkdir()
    yy, xx = np.mgrid[0:1000, 0:1000]
    with rasterio.open(
        aster / "ASTGTMV003_N37W006_dem.tif",
        "w",
        driver="GTiff",
        width=1000,
        height=1000,
        count=1,
        dtype="int16",
        crs="EPSG:4326",
        transform=Affine(0.001, 0, -6.0, 0, -0.001, 38.0),
    ) as dst:
        dst.write((200 + 0.5 * xx + 0.3 * yy).astype("int16"), 1)
    settings = make_settings(tmp_path, DEM_SOURCE=str(aster))
    ctx = Context.open(settings)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        acquire(ctx, LocalProvider(tmp_path / "src"), ["30SUF"], [season], client, progress=False)
        composite(ctx, ["30SUF"], [season], client, CompositeParams(), progress=False)
        found = feature_sources(ctx, "30SUF", [season], CompositeParams(), with_dem=True)
        assert found.missing == ["DEM layers"]  # DEM wanted but not built yet
        status = dem_stage(ctx, ["30SUF"], DEMSource(str(aster)), client)
    assert status["30SUF"].startswith("built")
    found = feature_sources(ctx, "30SUF", [season], CompositeParams(), with_dem=True)
    sources = found.sources
    assert found.complete and "dem" in sources
    names = feature_names(sources)
    assert sorted(names[-3:]) == ["dem_aspect", "dem_elevation", "dem_slope"]
    with FeatureReader(ctx.store, sources, names) as reader:
        block = reader.read(Window(10, 10, 5, 5))
    elevation = block[names.index("dem_elevation")]
    # the stored elevation layer's pixels of that window (the same grid), exactly
    layer = ctx.catalog.find("dems")[0]["layers"]["elevation"]
    with rasterio.open(ctx.store.raster_uri(layer["bucket"], layer["key"])) as src:
        np.testing.assert_array_equal(elevation, src.read(1, window=Window(10, 10, 5, 5)))
    # and those are the source plane 200 + 0.5 x + 0.3 y (x, y in 0.001-degree cells from -6 E,
    # 38 N; truncated to int16) at the pixel centres: bilinear interpolation of a plane is exact
    from pyproj import Transformer

    comp = ctx.catalog.find("composites")[0]
    rows, cols = np.mgrid[10:15, 10:15]
    xs, ys = Affine(*comp["grid"]["transform"][:6]) * (cols + 0.5, rows + 0.5)
    lon, lat = Transformer.from_crs(comp["grid"]["crs"], "EPSG:4326", always_xy=True).transform(xs, ys)
    plane = 200 + 0.5 * ((lon + 6.0) / 0.001 - 0.5) + 0.3 * ((38.0 - lat) / 0.001 - 0.5)
    np.testing.assert_allclose(elevation, plane, atol=1.0)
    assert np.isfinite(block[names.index("dem_slope")]).all()


def test_dem_layers_become_abundance_ancillaries(tmp_path: Path) -> None:
    """`abundance dataset --dem-ancillary`: altitude and slope of the DEM stage's layers, averaged
    onto a coarse (MODIS-like) grid inside them."""
    from landcoverpy.assets.lookup import dem_ancillary_sources as dem_ancillaries
    from landcoverpy.raster.ancillary import ancillary_layers

    source_dir = tmp_path / "aster"
    source_dir.mkdir()
    shutil.copy(shared_data("pysheds-dem") / "dem.tif", source_dir / "ASTGTMV003_N32W098_dem.tif")
    settings = make_settings(tmp_path)
    ctx = Context.open(settings)
    from landcoverpy.errors import InputValidationError

    with pytest.raises(InputValidationError, match="no DEM layers"):
        dem_ancillaries(ctx)
    fine = Grid("EPSG:32614", (30.0, 0.0, 643000.0, 0.0, -30.0, 3630000.0), 400, 380)
    sources = ensure_dem_tiles(ctx, DEMSource(str(source_dir)), ["ASTGTMV003_N32W098"])
    ctx.catalog.upsert("dems", build_dem(settings, "14SPB", fine, sources, window_size=128).to_doc())
    coarse = Grid("EPSG:32614", (460.0, 0.0, 644000.0, 0.0, -460.0, 3629000.0), 20, 20)
    with ctx.store.rasterio_env():
        values, names = ancillary_layers(dem_ancillaries(ctx), coarse)
        rec = ctx.catalog.find("dems", {"tile": "14SPB"})[0]
        with rasterio.open(
            ctx.store.raster_uri(rec["layers"]["elevation"]["bucket"], rec["layers"]["elevation"]["key"])
        ) as src:
            direct = np.full(coarse.shape, np.nan, "float32")
            reproject(
                rasterio.band(src, 1),
                direct,
                src_nodata=src.nodata,
                dst_transform=coarse.affine,
                dst_crs=coarse.crs,
                dst_nodata=np.nan,
                resampling=Resampling.average,
            )
    assert names == ["longitude", "latitude", "altitude", "slope"]
    np.testing.assert_allclose(values[:, 2].reshape(coarse.shape), direct, atol=0.5)
    assert 140 < values[:, 2].min() and values[:, 2].max() < 300
    assert (values[:, 3] >= 0).all() and values[:, 3].mean() > 0.1  # degrees, averaged from 30 m slopes
