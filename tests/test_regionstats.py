"""Class statistics per region on generated maps with known answers: counts and areas per region
and class equal what the map holds inside each polygon, block by block as over the whole map,
whatever the regions' CRS; the GeoPackage opens with pyogrio with one layer per level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyogrio.raw import read as ogr_read
from pyogrio.raw import write as ogr_write
from pyproj import Transformer
from rasterio.transform import from_origin

from landcoverpy.errors import InputValidationError
from landcoverpy.pipeline.regionstats import (
    LevelStats,
    Regions,
    TileShare,
    load_regions,
    map_level_stats,
    merge,
    region_area_estimates,
    rows,
    write_gpkg,
    zonal_counts,
)
from landcoverpy.raster.grid import Grid

CRS = "EPSG:32630"
X0, Y0, RES, N = 400000.0, 4500000.0, 10.0, 120
CLASSES = {1: "water", 2: "forest", 3: "crops"}


def generated_map(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """Classes in vertical stripes 40 pixels wide (1, 2, 3), a no-data row at the top;
    confidence 50 + 10 x class."""
    classes = np.repeat(np.array([1, 2, 3], "uint8"), 40)[None, :].repeat(N, axis=0)
    classes[0] = 0
    confidence = (50 + 10 * classes).astype("uint8")
    paths = []
    for name, data in (("classification.tif", classes), ("confidence.tif", confidence)):
        path = tmp_path / name
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=N,
            height=N,
            count=1,
            dtype="uint8",
            crs=CRS,
            transform=from_origin(X0, Y0, RES, RES),
            nodata=0,
        ) as dst:
            dst.write(data, 1)
        paths.append(path)
    return paths[0], paths[1], classes


def regions_file(tmp_path: Path, crs: str = CRS) -> Path:
    """West: columns 0-59 (all of stripe 1, half of stripe 2); east: columns 60-119."""
    west = shapely.box(X0, Y0 - N * RES, X0 + 60 * RES, Y0)
    east = shapely.box(X0 + 60 * RES, Y0 - N * RES, X0 + N * RES, Y0)
    geoms = [west, east]
    if crs != CRS:
        tr = Transformer.from_crs(CRS, crs, always_xy=True)
        geoms = [shapely.transform(shapely.segmentize(g, 10.0), tr.transform, interleaved=False) for g in geoms]
    path = tmp_path / "regions.gpkg"
    ogr_write(
        str(path),
        shapely.to_wkb(np.array(geoms, dtype=object)),
        [np.array(["West", "East"], dtype=object)],
        ["name"],
        driver="GPKG",
        crs=crs,
        geometry_type="Polygon",
    )
    return path


def test_zonal_counts_are_a_cross_tabulation() -> None:
    classes = np.array([[1, 1, 2], [0, 2, 2]])
    zones = np.array([[1, 2, 2], [1, 1, 0]])
    counts, sums = zonal_counts(classes, zones, 2, 3, np.full(classes.shape, 80.0))
    assert counts.tolist() == [[0, 1, 1], [0, 1, 1]]
    assert sums.tolist() == [[0, 80, 80], [0, 80, 80]]


@pytest.mark.parametrize("crs", [CRS, "EPSG:4326"])
@pytest.mark.parametrize("block", [16, 1024])
def test_counts_areas_and_confidence_per_region(tmp_path: Path, crs: str, block: int) -> None:
    cls_path, conf_path, classes = generated_map(tmp_path)
    regions = load_regions(regions_file(tmp_path, crs), "name")
    stats = map_level_stats(str(cls_path), str(conf_path), regions, CLASSES, block=block)
    valid_rows = N - 1
    assert stats.counts[0].tolist() == [0, 40 * valid_rows, 20 * valid_rows, 0]  # west
    assert stats.counts[1].tolist() == [0, 0, 20 * valid_rows, 40 * valid_rows]  # east
    table = {(r["region"], r["class"]): r for r in rows(regions, "category", stats)}
    assert table[("West", "water")]["area_ha"] == pytest.approx(40 * valid_rows * 100 / 1e4)
    assert table[("West", "water")]["percent"] == pytest.approx(100 * 40 / 60)
    assert table[("East", "crops")]["mean_confidence"] == pytest.approx(80.0)
    assert ("East", "water") not in table
    # the class areas over all regions are the map's class areas (the regions cover it once)
    for value, name in CLASSES.items():
        mapped = int((classes == value).sum())
        assert sum(r["pixels"] for r in table.values() if r["class"] == name) == mapped


def test_geopackage_has_a_layer_per_level_with_class_columns(tmp_path: Path) -> None:
    cls_path, conf_path, _ = generated_map(tmp_path)
    regions = load_regions(regions_file(tmp_path), "name")
    stats = map_level_stats(str(cls_path), str(conf_path), regions, CLASSES)
    out = write_gpkg(regions, {"category": stats, "subcategory": stats}, tmp_path / "out" / "stats.gpkg")
    for layer in ("category", "subcategory"):
        meta, _, geometry, columns = ogr_read(str(out), layer=layer)
        fields = list(meta["fields"])
        assert fields[0] == "name" and "water ha" in fields and "crops %" in fields
        data = dict(zip(fields, columns))
        assert data["name"].tolist() == ["West", "East"]
        assert data["water ha"].tolist() == pytest.approx([40 * (N - 1) * 100 / 1e4, 0.0])
        assert len(geometry) == 2


def test_bad_regions_are_refused_with_the_file_and_feature(tmp_path: Path) -> None:
    path = tmp_path / "points.gpkg"
    ogr_write(
        str(path),
        shapely.to_wkb(np.array([shapely.Point(0, 0)], dtype=object)),
        [np.array(["a"], dtype=object)],
        ["name"],
        driver="GPKG",
        crs="EPSG:4326",
        geometry_type="Point",
    )
    with pytest.raises(InputValidationError, match=r"points.gpkg: feature 1 is Point; regions must be polygons"):
        load_regions(path)
    good = regions_file(tmp_path)
    with pytest.raises(InputValidationError, match=r"no field 'municipality'; the fields are name"):
        load_regions(good, "municipality")


def write_map(path: Path, data: np.ndarray, x0: float, y0: float, crs: str = CRS) -> Path:
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile, crs=crs, transform=from_origin(x0, y0, RES, RES), nodata=0) as dst:
        dst.write(data, 1)
    return path


def polygons_file(tmp_path: Path, geoms: list[object], names: list[str]) -> Path:
    path = tmp_path / "polygons.gpkg"
    ogr_write(
        str(path),
        shapely.to_wkb(np.array(geoms, dtype=object)),
        [np.array(names, dtype=object)],
        ["name"],
        driver="GPKG",
        crs=CRS,
        geometry_type="Polygon",
    )
    return path


def inside_counts(classes: np.ndarray, x0: float, y0: float, region: object) -> list[int]:
    """Pixels of each class whose centre lies inside ``region`` (shapely, independently)."""
    rr, cc = np.mgrid[0 : classes.shape[0], 0 : classes.shape[1]]
    inside = shapely.contains_xy(region, x0 + (cc + 0.5) * RES, y0 - (rr + 0.5) * RES)
    return [int(((classes == v) & inside).sum()) if v else 0 for v in range(4)]


def test_overlapping_regions_each_count_every_pixel_inside_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    classes = rng.integers(0, 4, (N, N)).astype("uint8")
    path = write_map(tmp_path / "map.tif", classes, X0, Y0)
    big = shapely.box(X0 + 103, Y0 - 903, X0 + 807, Y0 - 97)  # no edge through a pixel centre
    small = shapely.Polygon([(X0 + 400, Y0 - 300), (X0 + 1100, Y0 - 450), (X0 + 600, Y0 - 1100)])  # half in big
    assert big.overlaps(small)
    regions = load_regions(polygons_file(tmp_path, [big, small], ["big", "small"]), "name")
    for block in (16, 1024):
        stats = map_level_stats(str(path), None, regions, CLASSES, block=block)
        assert stats.counts[0].tolist() == inside_counts(classes, X0, Y0, big)
        assert stats.counts[1].tolist() == inside_counts(classes, X0, Y0, small)


def test_a_region_crossing_two_tiles_counts_their_overlap_once(tmp_path: Path) -> None:
    """Two tiles' maps on one 10 m lattice overlapping by 40 columns (as neighbouring Sentinel-2
    tiles do) and a region across both: its counts are those of the two maps' mosaic, the
    overlap counted once."""
    rng = np.random.default_rng(5)
    mosaic = rng.integers(1, 4, (N, 200)).astype("uint8")
    west = write_map(tmp_path / "west.tif", mosaic[:, :120], X0, Y0)
    east = write_map(tmp_path / "east.tif", mosaic[:, 80:], X0 + 80 * RES, Y0)
    region = shapely.box(X0 + 503, Y0 - 1007, X0 + 1506, Y0 - 42)
    regions = load_regions(polygons_file(tmp_path, [region], ["across"]), "name")
    grids = {}
    for tile, path in (("30SUF", west), ("30SVF", east)):
        with rasterio.open(path) as src:
            grids[tile] = Grid(CRS, tuple(src.transform)[:6], src.width, src.height)
    share = TileShare.of(grids)
    total = None
    for tile, path in (("30SUF", west), ("30SVF", east)):
        total = merge(total, map_level_stats(str(path), None, regions, CLASSES, 32, tile=tile, share=share))
    assert total is not None
    assert total.counts[0].tolist() == inside_counts(mosaic, X0, Y0, region)
    doubled = [map_level_stats(str(p), None, regions, CLASSES, 32).counts[0].sum() for p in (west, east)]
    assert sum(doubled) > total.counts[0].sum()  # without the share, the overlap counts twice


def test_area_adjusted_areas_per_region_by_hand() -> None:
    """Olofsson et al. (2014) per region, worked by hand: a region mapped 8 ha forest and 2 ha
    crops (1000 pixels of 100 m2) with 10 sample points in mapped forest (2 of them crops on the
    ground) and 5 in mapped crops (all crops): W = (0.8, 0.2), crops' proportion 0.8 x 2/10 +
    0.2 = 0.36 -> 3.6 ha, forest 6.4 ha; SE(crops) = sqrt(0.8^2 x 0.2 x 0.8 / 9) = 0.1067, so
    the 95 % interval is 1.96 x 0.1067 x 10 ha = 2.09 ha; crops' producer's accuracy 0.2/0.36.
    A second region holds no point (no row); points outside every region count for none."""
    left = shapely.box(0, 0, 10, 10)
    regions = Regions("r.gpkg", ["left", "empty"], [left, shapely.box(20, 0, 30, 10)], "EPSG:4326", [], [])
    stats = LevelStats({1: "forest", 2: "crops"}, np.array([[0, 800, 200], [0, 500, 500]]), np.zeros((2, 3)), 100.0)
    mapped = np.array([1] * 10 + [2] * 5 + [1] * 4)
    reference = ["forest"] * 8 + ["crops"] * 2 + ["crops"] * 5 + ["crops"] * 4
    lon = np.array([5.0] * 15 + [50.0] * 4)  # the last four points lie in no region
    lat = np.full(19, 5.0)
    rows = {r["class"]: r for r in region_area_estimates(regions, "category", stats, lon, lat, reference, mapped)}
    assert set(rows) == {"forest", "crops"} and {r["region"] for r in rows.values()} == {"left"}
    assert rows["crops"]["estimated_ha"] == pytest.approx(3.6) and rows["forest"]["estimated_ha"] == pytest.approx(6.4)
    assert rows["crops"]["mapped_ha"] == pytest.approx(2.0) and rows["forest"]["sample"] == 10
    assert rows["crops"]["ci95_ha"] == pytest.approx(1.96 * np.sqrt(0.64 * 0.16 / 9) * 10, abs=1e-3)
    assert rows["crops"]["producers_accuracy"] == pytest.approx(0.2 / 0.36, abs=1e-4)
    assert rows["forest"]["users_accuracy"] == pytest.approx(0.8)
    assert rows["forest"]["region_overall_accuracy"] == pytest.approx(0.84)
