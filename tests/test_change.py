"""Change between two maps on generated maps with known answers: the transition matrix, the change
map and its legend; the area-adjusted change estimate reproduces the worked example of Olofsson et
al. (2014, Remote Sensing of Environment 148, section 5: deforestation, forest gain, stable forest,
stable non-forest, 640 reference samples): areas 21,158 +- 6,158, 11,686 +- 3,756,
285,770 +- 15,510 and 581,386 +- 16,282 ha."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from landcoverpy.errors import InputValidationError
from landcoverpy.pipeline.change import (
    area_adjusted_change,
    change_map,
    read_change_sample,
    same_classes,
    summarise,
    write_transitions,
)
from landcoverpy.raster.cog import validate_cog
from landcoverpy.styles import read_paletted_qml

CRS = "EPSG:32630"
X0, Y0 = 400000.0, 4500000.0
CLASSES = {1: "forest", 2: "non-forest"}
# Olofsson et al. (2014) table 8: mapped pixels of each stratum (30 m Landsat pixels, 0.09 ha),
# here a tenth as many pixels ten times as large (0.9 ha): the same areas
STRATA = {(1, 2): 20_000, (2, 1): 15_000, (1, 1): 320_000, (2, 2): 645_000}  # def, gain, SF, SNF
# rows: map stratum, columns: reference (deforestation, gain, stable forest, stable non-forest)
SAMPLE = {(1, 2): [66, 0, 5, 4], (2, 1): [0, 55, 8, 12], (1, 1): [1, 0, 153, 11], (2, 2): [2, 1, 9, 313]}
REFERENCE = [(1, 2), (2, 1), (1, 1), (2, 2)]


def write_map(path: Path, data: np.ndarray, res: float, x0: float = X0, y0: float = Y0) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint8",
        crs=CRS,
        transform=from_origin(x0, y0, res, res),
        nodata=0,
    ) as dst:
        dst.write(data, 1)
    return path


def olofsson_maps(tmp_path: Path) -> tuple[Path, Path, dict[tuple[int, int], tuple[int, int]], float]:
    """Two 1000 x 1000 maps whose transitions are the strata, in bands of rows; returns the row
    range of each stratum and the pixel size (0.9 ha)."""
    before = np.zeros((1000, 1000), "uint8")
    after = np.zeros((1000, 1000), "uint8")
    rows, r = {}, 0
    for (a, b), n in STRATA.items():
        h = n // 1000
        before[r : r + h], after[r : r + h] = a, b
        rows[(a, b)] = (r, r + h)
        r += h
    res = float(np.sqrt(9000.0))
    return write_map(tmp_path / "y1.tif", before, res), write_map(tmp_path / "y2.tif", after, res), rows, res


def test_transition_matrix_and_change_map(tmp_path: Path) -> None:
    y1, y2, rows, _ = olofsson_maps(tmp_path)
    small = change_map(str(y1), str(y2), CLASSES, tmp_path / "change_small.tif", block=128)
    t = change_map(str(y1), str(y2), CLASSES, tmp_path / "change.tif")
    assert np.array_equal(small.pixels, t.pixels)  # block by block = the whole map at once
    for (a, b), n in STRATA.items():
        assert t.pixels[a, b] == n
    assert t.matrix().loc["forest", "non-forest"] == 20_000
    assert t.pixel_area_ha == pytest.approx(0.9)
    assert validate_cog(tmp_path / "change.tif")[0]
    with rasterio.open(tmp_path / "change.tif") as src:
        data = src.read(1)
        cmap = src.colormap(1)
    r0, _ = rows[(1, 2)]
    assert (data[r0] == t.code(1, 2)).all()
    legend = read_paletted_qml((tmp_path / "change.qml").read_text())
    assert legend[t.code(1, 2)][0] == "forest -> non-forest" and legend[t.code(1, 1)][0] == "forest"
    assert cmap[t.code(1, 1)][:3] == (200, 200, 200)  # stable: grey
    out = pd.read_csv(write_transitions(t, tmp_path / "transitions.csv"))
    row = out[(out["from"] == "non-forest") & (out["to"] == "forest")].iloc[0]
    assert row["pixels"] == 15_000 and row["area_ha"] == pytest.approx(13_500)


def test_the_summary_of_a_catalogued_change_counts_only_changed_pairs(tmp_path: Path) -> None:
    """From the legend and pixel counts a change product is catalogued with (as services does):
    deforestation and gain are the changes, 35 000 of 1 000 000 pixels; a class name holding
    " -> " must not pass for a change."""
    y1, y2, _, _ = olofsson_maps(tmp_path)
    classes = {1: "forest -> regrowth", 2: "non-forest"}
    t = change_map(str(y1), str(y2), classes, tmp_path / "change.tif")
    legend = {str(t.code(a, b)): t.label(a, b) for a, b in t.pairs()}
    pixels = {t.label(a, b): int(t.pixels[a, b]) for a, b in t.pairs() if t.pixels[a, b]}
    got = summarise(legend, pixels, t.pixel_area_ha)
    assert got.changed == [
        ("forest -> regrowth -> non-forest", pytest.approx(18_000)),
        ("non-forest -> forest -> regrowth", pytest.approx(13_500)),
    ]
    assert got.total_ha == pytest.approx(900_000) and got.changed_share == pytest.approx(0.035)


def test_area_adjusted_change_reproduces_olofsson_2014(tmp_path: Path) -> None:
    y1, y2, rows, res = olofsson_maps(tmp_path)
    t = change_map(str(y1), str(y2), CLASSES, tmp_path / "change.tif")
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    points = []
    for stratum, counts in SAMPLE.items():
        r0, r1 = rows[stratum]
        cells = [(r, c) for r in range(r0, r1) for c in range(0, 1000, 7)][: sum(counts)]
        labels = [ref for ref, n in zip(REFERENCE, counts) for _ in range(n)]
        for (r, c), (a, b) in zip(cells, labels):
            lon, lat = to_lonlat.transform(X0 + (c + 0.5) * res, Y0 - (r + 0.5) * res)
            points.append({"latitude": lat, "longitude": lon, "from": CLASSES[a], "to": CLASSES[b]})
    pd.DataFrame(points).to_csv(tmp_path / "sample.csv", index=False)
    sample = read_change_sample(tmp_path / "sample.csv", CLASSES)
    assert len(sample) == 640
    est = area_adjusted_change(str(tmp_path / "change.tif"), t, sample)
    order = {label: i for i, label in enumerate(est.classes)}
    published = {
        "forest -> non-forest": (21_158, 6_158),
        "non-forest -> forest": (11_686, 3_756),
        "forest": (285_770, 15_510),
        "non-forest": (581_386, 16_282),
    }
    for label, (area, ci) in published.items():
        assert round(est.area[order[label]]) == area, label
        assert round(est.area_ci[order[label]]) == ci, label


def test_a_to_map_on_another_grid_is_resampled(tmp_path: Path) -> None:
    before = np.ones((60, 60), "uint8")
    after = np.ones((30, 30), "uint8")
    after[:, 15:] = 2  # the east half became non-forest, on a 20 m grid
    y1 = write_map(tmp_path / "y1.tif", before, 10.0)
    y2 = write_map(tmp_path / "y2.tif", after, 20.0)
    t = change_map(str(y1), str(y2), CLASSES, tmp_path / "change.tif")
    assert t.pixels[1, 2] == 60 * 30 and t.pixels[1, 1] == 60 * 30


def test_maps_of_different_label_sets_are_refused() -> None:
    with pytest.raises(InputValidationError, match=r"only in the first non-forest \(2\); only in the second bare"):
        same_classes(CLASSES, {1: "forest", 2: "bare"}, "map a", "map b")


def test_a_sample_with_an_unknown_class_names_the_row(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("latitude,longitude,from,to\n40,-3,forest,forest\n40,-3,forest,water\n")
    with pytest.raises(InputValidationError, match=r"s.csv, row 3: to class 'water'"):
        read_change_sample(tmp_path / "s.csv", CLASSES)


def test_change_within_an_area(tmp_path: Path) -> None:
    """With an area of interest only the pixels whose centres lie inside it are tabulated and
    mapped: a box over columns 100-399 of every stratum's rows keeps 3/10 of each transition."""
    import shapely

    y1, y2, rows, res = olofsson_maps(tmp_path)
    box = shapely.box(X0 + 100 * res + 1, Y0 - 1000 * res, X0 + 400 * res - 1, Y0)
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    area = shapely.transform(shapely.segmentize(box, res), to_lonlat.transform, interleaved=False)
    t = change_map(str(y1), str(y2), CLASSES, tmp_path / "aoi.tif", block=256, area=area)
    for (a, b), n in STRATA.items():
        assert t.pixels[a, b] == n * 3 // 10, (a, b)
    with rasterio.open(tmp_path / "aoi.tif") as src:
        data = src.read(1)
    assert (data[:, :100] == 0).all() and (data[:, 400:] == 0).all() and (data[:, 100:400] > 0).all()
