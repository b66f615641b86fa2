"""Areas of interest: the tiles an area touches, and a mosaic clipped to it whose class areas equal
the sum over the tiles' maps inside the area (generated maps on two adjacent tile grids)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer

from landcoverpy import records
from landcoverpy.assets import publish
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError
from landcoverpy.pipeline.aoi import AreaOfInterest, build_mosaic, load_aoi, projected_geometry, tiles_for_aoi
from landcoverpy.raster.cog import write_cog
from landcoverpy.raster.grid import Grid
from landcoverpy.sentinel2 import tile_of
from landcoverpy.styles import read_paletted_qml

CRS = "EPSG:32630"
NAMES = {
    "classification": {1: "water", 2: "forest", 3: "crops/annual"},
    "sl_classification": {1: "not classified", 2: "lake", 3: "森林"},
}


def make_map(ctx: Context, tile: str, x0: float, y0: float, seed: int, tmp) -> dict:
    grid = Grid(CRS, (10.0, 0.0, x0, 0.0, -10.0, y0), 300, 300)
    rng = np.random.default_rng(seed)
    outputs = {}
    for level in NAMES:
        blocks = rng.integers(1, 4, size=(30, 30)).astype("uint8")
        arr = np.kron(blocks, np.ones((10, 10), "uint8"))
        arr[:5, :] = 0  # a nodata strip
        path = tmp / f"{tile}-{level}.tif"
        write_cog(path, arr, grid, nodata=0)
        outputs[level] = publish.put_file(
            ctx.store, ctx.settings.MINIO_BUCKET_CLASSIFICATIONS, f"{tile}/map-{tile}/{level}.tif", path
        )
    rec = {
        "_id": f"map-{tile}",
        "tile": tile,
        "kind": "classification",
        "grid": grid.to_dict(),
        "outputs": outputs,
        "classes": {level: {str(v): n for v, n in names.items()} for level, names in NAMES.items()},
    }
    return records.store_doc(ctx.catalog, records.MapRecord, rec)


def aoi_polygon() -> AreaOfInterest:
    """A pentagon across the boundary of the two grids (x = 303000), in WGS84."""
    ring = [(300500, 4098200), (302500, 4099700), (305100, 4099300), (305600, 4097400), (301500, 4097300)]
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(*zip(*ring))
    return AreaOfInterest("aoi.geojson", shapely.Polygon(list(zip(lon, lat))))


def counts_inside(ctx: Context, rec: records.MapRecord, level: str, aoi: AreaOfInterest) -> dict[int, int]:
    from rasterio.features import geometry_mask

    grid = rec.pixel_grid
    projected = projected_geometry(aoi, CRS)
    inside = ~geometry_mask([shapely.geometry.mapping(projected)], out_shape=grid.shape, transform=grid.affine)
    loc = rec.outputs[level]
    with rasterio.open(ctx.store.raster_uri(loc.bucket, loc.key)) as src:
        arr = src.read(1)
    values, cnt = np.unique(arr[inside & (arr > 0)], return_counts=True)
    return dict(zip(values.tolist(), cnt.tolist()))


def test_mosaic_is_clipped_and_its_areas_are_the_tiles_areas(local_settings, tmp_path) -> None:
    ctx = Context.open(local_settings)
    maps = {
        "30SUA": make_map(ctx, "30SUA", 300000, 4100000, 1, tmp_path),
        "30SVA": make_map(ctx, "30SVA", 303000, 4100000, 2, tmp_path),
    }
    aoi = aoi_polygon()
    rec = build_mosaic(ctx, aoi, maps, CRS, window_size=128)
    grid = rec.pixel_grid
    assert grid.crs == CRS and grid.resolution == 10.0
    for level in NAMES:
        expected: dict[int, int] = {}
        for tile_rec in maps.values():
            for v, c in counts_inside(ctx, tile_rec, level, aoi).items():
                expected[v] = expected.get(v, 0) + c
        assert rec.pixel_counts[level] == {NAMES[level][v]: c for v, c in sorted(expected.items())}
        assert rec.area_km2[level] == {NAMES[level][v]: round(c * 1e-4, 4) for v, c in sorted(expected.items())}
        loc = rec.outputs[level]
        assert loc.style is not None
        with rasterio.open(ctx.store.raster_uri(loc.bucket, loc.key)) as src:
            arr = src.read(1)
            assert src.crs.to_string() == CRS and src.colormap(1)[1][:3] != (0, 0, 0)
            bounds = src.bounds
        assert int((arr > 0).sum()) == sum(expected.values())  # clipped: nothing outside the area
        assert arr[:, 0].max() == 0 or arr[0, :].max() == 0  # the corners of the bounding box are outside
        minx, miny, maxx, maxy = projected_geometry(aoi, CRS).bounds
        assert bounds.left <= minx < bounds.left + 10 and bounds.top >= maxy > bounds.top - 10  # covers the area
        assert bounds.right >= maxx and bounds.bottom <= miny
        palette = read_paletted_qml(ctx.store.get_bytes(loc.bucket, loc.style).decode())
        assert {label for label, _ in palette.values()} == set(NAMES[level].values())
    assert build_mosaic(ctx, aoi, maps, CRS).id == rec.id  # reused, same id


def test_tiles_of_an_area_across_a_tile_boundary(tmp_path) -> None:
    a, b = tile_of(37.2, -3.05), tile_of(37.2, -2.85)
    assert a != b
    aoi = AreaOfInterest("x", shapely.box(-3.1, 37.15, -2.8, 37.25))
    assert {a, b} <= set(tiles_for_aoi(aoi))
    path = tmp_path / "points.geojson"
    path.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
        '"geometry": {"type": "Point", "coordinates": [-3, 37]}}]}'
    )
    with pytest.raises(InputValidationError, match="must be polygons"):
        load_aoi(path)
