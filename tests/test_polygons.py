"""Training from labelled polygons: each polygon becomes the 10 m pixels whose centres lie inside
it (on the Sentinel-2 lattice), up to MAX_PIXELS_PER_POLYGON; bad polygons get clean refusals
naming the feature; a polygon's pixels share its centroid's spatial block; metrics are reported
per polygon (majority of its pixels); and `run` trains from a GeoPackage of polygons end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from pyogrio.raw import write as ogr_write
from pyproj import Transformer

from landcoverpy.errors import InputValidationError
from landcoverpy.inputs import LabelSet, load_points
from landcoverpy.models.hierarchical import per_polygon, sample_blocks
from landcoverpy.sentinel2 import tile_bounds
from tests.lineage_scene import make_scene, plain_app_data
from tests.test_cli_status import run_cli
from tests.test_lineage import embedded

LC = LabelSet("lc_labels.json", {"water": 1, "vegetation": 2, "bare": 3}, 1)
SL = LabelSet("sl_labels.json", {"ocean": 2, "forest": 3}, 2)
EPSG, (LEFT, BOTTOM, RIGHT, TOP) = tile_bounds("18SVG")
X0, Y0 = 10 * np.floor((LEFT + 20_000) / 10), 10 * np.floor((BOTTOM + 30_000) / 10)  # on the 10 m lattice


def write(path: Path, geoms: list[object], categories: list[str], subcategories: list[str] | None = None) -> Path:
    fields = [np.array(categories, dtype=object)]
    names = ["category"]
    if subcategories is not None:
        fields.append(np.array(subcategories, dtype=object))
        names.append("subcategory")
    ogr_write(
        str(path),
        np.array([shapely.to_wkb(g) if g is not None else None for g in geoms], dtype=object),
        fields,
        names,
        driver="GPKG",
        crs=f"EPSG:{EPSG}",
        geometry_type="Unknown",
    )
    return path


def test_polygons_become_their_pixels(tmp_path: Path) -> None:
    a = shapely.box(X0, Y0, X0 + 100, Y0 + 50)  # 10 x 5 pixels exactly
    b = shapely.box(X0 + 1000.5, Y0, X0 + 1300.5, Y0 + 300)  # 30 x 30 centres inside
    path = write(tmp_path / "p.gpkg", [a, b], ["water", "vegetation"], ["ocean", "forest"])
    points = load_points(path, LC, SL, max_pixels_per_polygon=None).frame
    assert points.groupby("polygon_id").size().to_dict() == {1: 50, 2: 900}
    assert set(points.loc[points.polygon_id == 1, "category"]) == {"water"}
    assert set(points.loc[points.polygon_id == 2, "subcategory"]) == {"forest"}
    assert set(points["tile"]) == {"18SVG"}
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{EPSG}", always_xy=True)
    x, y = to_utm.transform(points["longitude"].to_numpy(), points["latitude"].to_numpy())
    assert np.allclose(np.mod(x, 10), 5, atol=1e-4) and np.allclose(np.mod(y, 10), 5, atol=1e-4)  # centres
    assert shapely.contains_xy(a, x[points.polygon_id == 1], y[points.polygon_id == 1]).all()
    centroid = points.loc[points.polygon_id == 2, ["block_latitude", "block_longitude"]].drop_duplicates()
    assert len(centroid) == 1
    capped = load_points(path, LC, SL, max_pixels_per_polygon=20).frame
    assert capped.groupby("polygon_id").size().to_dict() == {1: 20, 2: 20}
    again = load_points(path, LC, SL, max_pixels_per_polygon=20).frame
    pd.testing.assert_frame_equal(capped, again)  # the same pixels every time: the dataset id holds


def test_bad_polygons_are_refused_naming_the_feature(tmp_path: Path) -> None:
    good = shapely.box(X0, Y0, X0 + 100, Y0 + 100)
    bowtie = shapely.Polygon([(X0, Y0 + 500), (X0 + 100, Y0 + 600), (X0 + 100, Y0 + 500), (X0, Y0 + 600)])
    overlapping = shapely.box(X0 + 50, Y0 + 50, X0 + 150, Y0 + 150)
    tiny = shapely.box(X0 + 2001, Y0 + 2001, X0 + 2004, Y0 + 2004)
    cases = {
        "invalid": ([good, bowtie], ["water", "water"], "feature 2: not a valid polygon (Self-intersection"),
        "empty": ([good, shapely.Polygon()], ["water", "water"], "feature 2: empty geometry"),
        "unknown class": ([good], ["lava"], "feature 1: category 'lava' is not in lc_labels.json"),
        "overlap": ([good, overlapping], ["water", "bare"], "features 1 and 2 overlap with different labels"),
        "smaller than a pixel": ([good, tiny], ["water", "bare"], "feature 2: covers no 10 m pixel centre"),
    }
    for name, (geoms, cats, message) in cases.items():
        path = write(tmp_path / f"{name.replace(' ', '_')}.gpkg", geoms, cats)
        with pytest.raises(InputValidationError) as info:
            load_points(path, LC, SL)
        assert message in str(info.value), (name, str(info.value))
        assert str(path) in str(info.value)
    polar = tmp_path / "polar.gpkg"
    ogr_write(
        str(polar),
        np.array([shapely.to_wkb(shapely.box(10, 85, 10.01, 85.01))], dtype=object),
        [np.array(["water"], dtype=object)],
        ["category"],
        driver="GPKG",
        crs="EPSG:4326",
        geometry_type="Polygon",
    )
    with pytest.raises(InputValidationError, match="feature 1: point .* is outside every Sentinel-2 tile"):
        load_points(polar, LC, SL)


def test_a_polygon_never_straddles_two_blocks(tmp_path: Path) -> None:
    # a 3 km parcel across a 1 km block grid: all its pixels go to its centroid's block
    parcel = shapely.box(X0, Y0, X0 + 3000, Y0 + 400)
    points = load_points(write(tmp_path / "p.gpkg", [parcel], ["water"]), LC, SL, max_pixels_per_polygon=None).frame
    blocks = sample_blocks(points, block_km=1.0)
    assert len(np.unique(blocks)) == 1
    by_pixel = sample_blocks(points.drop(columns=["block_latitude", "block_longitude"]), block_km=1.0)
    assert len(np.unique(by_pixel)) > 1  # without the centroid the parcel would be cut


def test_per_polygon_scores_are_majority_votes() -> None:
    y = np.array(["a", "a", "a", "b", "b", "b", "b"])
    pred = np.array(["a", "b", "a", "a", "a", "b", "b"])  # polygon 1: a (2 of 3); polygon 2: a/b tie -> a
    truth, voted = per_polygon(y, pred, np.array([1, 1, 1, 2, 2, 2, 2]))
    assert truth.tolist() == ["a", "b"] and voted.tolist() == ["a", "a"]


@pytest.mark.slow
def test_run_trains_from_polygons(tmp_path: Path) -> None:
    """The lineage scene's points as 30 m squares around them (the 3 x 3 window a point gives):
    `run` takes the GeoPackage as its dataset and reports per-polygon metrics."""
    scene = {"source": make_scene(tmp_path), "plain": plain_app_data(tmp_path)}
    points = pd.read_csv(scene["plain"] / "dataset.csv")
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{EPSG}", always_xy=True)
    x, y = to_utm.transform(points["longitude"].to_numpy(), points["latitude"].to_numpy())
    cx, cy = 10 * np.floor(x / 10) + 5, 10 * np.floor(y / 10) + 5
    squares = [shapely.box(a - 15, b - 15, a + 15, b + 15) for a, b in zip(cx, cy, strict=True)]
    keep = [i for i, s in enumerate(squares) if not any(s.overlaps(t) for t in squares[:i])]
    polygons = write(
        tmp_path / "parcels.gpkg",
        [squares[i] for i in keep],
        points["category"].iloc[keep].tolist(),
        points["subcategory"].fillna("").iloc[keep].tolist(),
    )
    backend = embedded(tmp_path)
    args = ["run", "--provider", "local", "--source", str(scene["source"]), "--no-progress"]
    args += ["--dataset", str(polygons)]
    for name in ("seasons", "lc_labels", "sl_labels"):
        args += [f"--{name.replace('_', '-')}", str(scene["plain"] / f"{name}.json")]
    res = run_cli([*args, "--output-dir", str(tmp_path / "out")], backend.env, tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "models" / "category" / "metrics.json").read_text())["model"]
    assert metrics["per_polygon"]["polygons"] == len(keep)
    assert -1 <= metrics["per_polygon"]["kappa"] <= 1 and "macro_f1" in metrics["per_polygon"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"per polygon ({len(keep)} polygons," in report, report
    with backend.context() as ctx:
        from landcoverpy import records

        [dataset] = records.find(ctx.catalog, records.TrainingDatasetRecord, {"kind": None})
        assert dataset.neighbourhood == 1 and dataset.n_samples <= 9 * len(keep)
