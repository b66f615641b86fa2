"""Vector maps (landcoverpy/pipeline/vectorize.py) on generated class maps with known answers:
the sieve leaves no region under the minimum mapping unit, polygon areas per class equal the
sieved raster's class areas, the block-wise polygons equal the whole map's, and each polygon's
mean confidence is its region's (checked against an independent labelling of the whole map)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyogrio import read_info
from pyogrio.raw import read as ogr_read
from scipy import ndimage

from landcoverpy.errors import InputValidationError
from landcoverpy.pipeline.vectorize import (
    FOUR,
    Polygons,
    mmu_in_pixels,
    sieve_map,
    vectorize,
    vectorize_file,
    write_vectors,
)

TRANSFORM = Affine(10, 0, 500000, 0, -10, 4200000)
CRS = "EPSG:32630"
NAMES = {1: "forest", 2: "crop", 3: "urban", 4: "water"}
COLOURS = {1: (30, 120, 40), 2: (230, 200, 60), 3: (200, 30, 30), 4: (40, 90, 220)}


def class_map(seed: int = 0, shape: tuple[int, int] = (230, 190)) -> np.ndarray:
    """Smooth classes with speckle (single pixels and pairs) and a nodata corner."""
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.normal(size=shape), 5)
    g = ndimage.gaussian_filter(rng.normal(size=shape), 3)
    out = np.where(f > 0.03, 1, np.where(g > 0.02, 2, np.where(g < -0.05, 4, 3))).astype("uint8")
    speckle = rng.uniform(size=shape) < 0.02
    out[speckle] = rng.integers(1, 5, speckle.sum())
    out[:9, :13] = 0
    return out


def confidence_map(classes: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(classes > 0, rng.integers(30, 100, classes.shape), 0).astype("uint8")


def reader(array: np.ndarray):  # type: ignore[no-untyped-def]
    return lambda w: array[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width]


def run(classes: np.ndarray, block: int, conf: np.ndarray | None = None) -> Polygons:
    return vectorize(reader(classes), *classes.shape, TRANSFORM, CRS, block, reader(conf) if conf is not None else None)


def as_set(p: Polygons) -> list[tuple[int, int, float]]:
    return sorted(zip(p.values, p.pixels, np.round(p.mean_confidence(), 9).tolist(), strict=True))


def regions(classes: np.ndarray, conf: np.ndarray) -> list[tuple[int, int, float]]:
    """Every 4-connected region of one class of the whole map: (class, pixels, mean confidence)."""
    out = []
    for v in np.unique(classes[classes > 0]):
        labels, n = ndimage.label(classes == v, structure=FOUR)
        idx = np.arange(1, n + 1)
        counts = ndimage.sum_labels(np.ones_like(labels), labels, idx)
        sums = ndimage.sum_labels(conf.astype("float64"), labels, idx)
        out += [(int(v), int(c), round(float(s / c), 9)) for c, s in zip(counts, sums, strict=True)]
    return sorted(out)


@pytest.mark.parametrize("block", [16, 37, 64, 100])
def test_block_wise_polygons_equal_the_whole_maps(block: int) -> None:
    classes = class_map()
    conf = confidence_map(classes)
    whole, blocks = run(classes, 10_000, conf), run(classes, block, conf)
    assert as_set(blocks) == as_set(whole) == regions(classes, conf)
    assert len(whole) > 100  # many regions, many of them cut by block edges
    by_key: dict[tuple[int, int], list[object]] = {}
    for v, n, g in zip(whole.values, whole.pixels, whole.geometries, strict=True):
        by_key.setdefault((v, n), []).append(g)
    for v, n, g in zip(blocks.values, blocks.pixels, blocks.geometries, strict=True):
        assert g.is_valid and g.geom_type == "Polygon"
        assert any(g.equals(h) for h in by_key[(v, n)]), (v, n, g.wkt[:200])
        assert g.area == pytest.approx(n * 100.0)  # the polygon covers its pixels exactly


def test_polygon_areas_equal_the_sieved_rasters_class_areas(tmp_path: Path) -> None:
    classes = class_map(3)
    src = tmp_path / "map.tif"
    profile = {"driver": "GTiff", "width": classes.shape[1], "height": classes.shape[0], "count": 1}
    with rasterio.open(src, "w", **profile, dtype="uint8", crs=CRS, transform=TRANSFORM, nodata=0) as dst:
        dst.write(classes, 1)
    mmu = 6
    sieved_path = sieve_map(str(src), tmp_path / "sieved.tif", mmu)
    with rasterio.open(sieved_path) as s:
        sieved = s.read(1)
    assert (sieved == 0).sum() == (classes == 0).sum() and (sieved[classes == 0] == 0).all()  # nodata stays
    polygons = vectorize_file(str(sieved_path), block=50)
    raster_ha = {int(v): float((sieved == v).sum()) * 100 / 1e4 for v in np.unique(sieved) if v}
    assert polygons.class_areas_ha() == pytest.approx(raster_ha)
    # the speckle is gone: no region under the unit, except regions closed in by nodata alone
    small = [n for n in polygons.pixels if n < mmu]
    assert len(small) <= 2 and min(polygons.pixels) >= 1
    unsieved = vectorize_file(str(src), block=50)
    assert sum(1 for n in unsieved.pixels if n < mmu) > 50  # there was speckle to remove


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_streamed_sieve_equals_gdals_sieve_of_the_whole_array(tmp_path: Path, dtype: str) -> None:
    """sieve_map copies and sieves block by block through scratch files (a byte map is its own
    mask; a wider one gets a mask file) and must give what GDAL's sieve gives on the whole array
    in memory, with the colour table kept and no scratch file left."""
    from rasterio.features import sieve

    classes = class_map(7, (230, 190)).astype(dtype)
    if dtype == "uint16":
        classes[classes > 0] += 300  # class values that do not fit a byte
    src = tmp_path / "map.tif"
    profile = {"driver": "GTiff", "width": classes.shape[1], "height": classes.shape[0], "count": 1}
    with rasterio.open(src, "w", **profile, dtype=dtype, crs=CRS, transform=TRANSFORM, nodata=0) as dst:
        dst.write(classes, 1)
        if dtype == "uint8":
            dst.write_colormap(1, {v: (*c, 255) for v, c in COLOURS.items()})
    out = tmp_path / "sieved" / "classification.tif"
    out.parent.mkdir()
    sieve_map(str(src), out, 6, block=64)
    with rasterio.open(out) as got:
        assert np.array_equal(got.read(1), sieve(classes, 6, mask=classes != 0, connectivity=4))
        if dtype == "uint8":
            assert {v: got.colormap(1)[v][:3] for v in COLOURS} == COLOURS
    assert sorted(p.name for p in out.parent.iterdir()) == ["classification.tif"]


def test_minimum_mapping_unit_in_pixels_or_hectares() -> None:
    assert mmu_in_pixels(None, 0.5, 100.0) == 50  # 0.5 ha of 10 m pixels
    assert mmu_in_pixels(None, 0.05, 400.0) == 2  # rounded up: 1.25 pixels of 20 m
    assert mmu_in_pixels(8, None, 100.0) == 8 and mmu_in_pixels(None, None, 100.0) == 1
    with pytest.raises(InputValidationError, match="not both"):
        mmu_in_pixels(4, 1.0, 100.0)
    with pytest.raises(InputValidationError, match="1 or more"):
        mmu_in_pixels(0, None, 100.0)


def test_geopackage_and_flatgeobuf_open_with_their_attributes_and_style(tmp_path: Path) -> None:
    classes = class_map(5, (120, 140))
    conf = confidence_map(classes)
    polygons = run(classes, 40, conf)
    files = write_vectors(polygons, NAMES, COLOURS, tmp_path / "classification_mmu1", "classification")
    for suffix, path in files.items():
        info = read_info(str(path), layer="classification" if suffix == ".gpkg" else None)
        assert info["features"] == len(polygons) and info["geometry_type"] == "Polygon"
        assert list(info["fields"]) == ["value", "class", "area_ha", "pixels", "confidence"]
        assert info["crs"].endswith("32630")
        meta, _, geometry, fields = ogr_read(str(path), layer="classification" if suffix == ".gpkg" else None)
        table = dict(zip(meta["fields"], fields, strict=True))
        assert set(table["class"]) == {NAMES[v] for v in np.unique(classes[classes > 0])}
        np.testing.assert_allclose(table["area_ha"], table["pixels"] * 0.01)
        areas = shapely.area(shapely.from_wkb(geometry))
        np.testing.assert_allclose(areas, table["pixels"] * 100.0)
        assert ((table["confidence"] >= 30) & (table["confidence"] <= 99)).all()
    with sqlite3.connect(files[".gpkg"]) as con:
        row = con.execute("SELECT f_table_name, useAsDefault, styleQML FROM layer_styles").fetchone()
        contents = {r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")}
    assert row[0] == "classification" and row[1] == 1 and 'type="categorizedSymbol"' in row[2]
    assert all(f'value="{name}"' in row[2] for name in ("forest", "crop", "urban"))
    assert "layer_styles" in contents  # registered, so GeoPackage validators accept the table
