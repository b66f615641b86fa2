"""Map accuracy and area estimates from reference points, and sample designs to collect them.

``assess``: the reference points (photo-interpreted labels) are looked up in the maps, counted
per map class (the strata) and reference class, and turned into an error matrix in area
proportions, user's / producer's / overall accuracy and the area of every class with a 95 %
confidence interval (Olofsson et al. 2014, :mod:`landcoverpy.models.area`), at the category
level and at the subcategory level (whose classes nest in their category).

``design``: a stratified random sample of pixels of the maps, its size from a target standard
error of overall accuracy, at least a minimum per class; exported as CSV and KMZ for
photo-interpretation. The estimators assume such a sample: random within each map class.
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
import rasterio
from pyproj import Transformer

from landcoverpy.assets.map_values import sample_map
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError
from landcoverpy.models.area import AreaAccuracy, allocate, area_adjusted_accuracy, sample_size
from landcoverpy.raster.grid import block_windows
from landcoverpy.records import MapRecord

log = logging.getLogger(__name__)

LEVELS = {"classification": "category", "sl_classification": "subcategory"}


def class_values(maps: dict[str, MapRecord], level: str) -> dict[str, int]:
    """Class name -> map value of a level (the same legend on every map of one model)."""
    return next(iter(maps.values())).class_values(level)


def assess(ctx: Context, maps: dict[str, MapRecord], points: pd.DataFrame) -> dict[str, AreaAccuracy]:
    """Area-adjusted accuracy per level; ``points`` has latitude, longitude, tile, category and
    (optionally) subcategory columns with class names."""
    if not maps:
        raise InputValidationError("no map to assess: classify the points' tiles first")
    out = {}
    for level, column in LEVELS.items():
        values = class_values(maps, level)
        if level == "sl_classification":
            values = {n: v for n, v in values.items() if v > 1}  # 1 = not classified is not a class
        names = sorted(values, key=values.get)  # type: ignore[arg-type]
        index = {values[n]: i for i, n in enumerate(names)}
        counts = np.zeros((len(names), len(names)), dtype=int)
        used = 0
        for tile, pts in points.groupby("tile"):
            rec = maps.get(str(tile))
            if rec is None:
                continue
            mapped = sample_map(ctx, rec, level, pts)
            for ref_name, value in zip(pts[column].astype(str), mapped):
                if int(value) in index and ref_name in values:
                    counts[index[int(value)], index[values[ref_name]]] += 1
                    used += 1
        if not used:
            continue
        pixels = np.zeros(len(names))
        area_px = None
        for rec in maps.values():
            for name, c in rec.pixel_counts.get(level, {}).items():
                if name in values:
                    pixels[index[values[name]]] += c
            area_px = rec.pixel_grid.resolution**2 / 1e6
        out[level] = area_adjusted_accuracy(counts, np.maximum(pixels, 0), area_px or 1.0, names)
        log.info(
            "%s: %d reference points, overall accuracy %.3f ± %.3f",
            level,
            used,
            out[level].overall,
            out[level].overall_ci,
        )
    return out


def holdout_areas(ctx: Context, maps: dict[str, MapRecord], points: pd.DataFrame) -> dict[str, Any]:
    """Area-adjusted accuracy and class areas (95 % CIs) of the maps from held-out labelled points,
    per level (``category``, ``subcategory``), as plain dicts for records and reports. The
    estimators are design-based: they hold when the points are a random sample within each map
    class (as ``design`` draws); for points collected otherwise they are indicative."""
    used = {t: r for t, r in maps.items() if t in set(points["tile"].astype(str))}
    if not used:
        return {}
    return {LEVELS[level]: r.to_dict() for level, r in assess(ctx, used, points).items()}


def design(
    ctx: Context,
    maps: dict[str, MapRecord],
    level: str = "classification",
    total: int | None = None,
    target_se: float = 0.01,
    expected_users: float = 0.8,
    minimum: int = 50,
    seed: int = 0,
    window: int = 2048,
) -> pd.DataFrame:
    """A stratified random sample of map pixels (strata = map classes) over every map given."""

    values = class_values(maps, level)
    if level == "sl_classification":
        values = {n: v for n, v in values.items() if v > 1}
    names = sorted(values, key=values.get)  # type: ignore[arg-type]
    pixels = np.array(
        [sum(rec.pixel_counts.get(level, {}).get(n, 0) for rec in maps.values()) for n in names], dtype=float
    )
    if pixels.sum() == 0:
        raise InputValidationError("the maps have no classified pixel to sample")
    weights = pixels / pixels.sum()
    n = total or sample_size(weights, np.full(len(names), expected_users), target_se)
    want = allocate(n, weights, minimum, available=pixels.astype(int))

    def draw() -> dict[int, list[tuple[float, str, int, int]]]:
        """The sample, from a fresh generator: a read retried after an outage draws the same."""
        rng = np.random.default_rng(seed)
        # reservoir sampling per class over every map's pixels, window by window: memory stays bounded
        keep: dict[int, list[tuple[float, str, int, int]]] = {values[c]: [] for c in names}
        for tile in sorted(maps):
            rec = maps[tile]
            loc = rec.outputs[level]
            grid = rec.pixel_grid
            with ctx.store.rasterio_env(), rasterio.open(ctx.store.raster_uri(loc.bucket, loc.key)) as src:
                for win in block_windows(grid.height, grid.width, window):
                    arr = src.read(1, window=win)
                    for name in names:
                        v = values[name]
                        rows, cols = np.nonzero(arr == v)
                        if not len(rows):
                            continue
                        keys = rng.random(len(rows))  # random keys: the k smallest are a uniform sample
                        bucket = keep[v]
                        k = int(want[names.index(name)])
                        pick = np.argpartition(keys, k - 1)[:k] if k < len(keys) else np.arange(len(keys))
                        bucket.extend(
                            (float(keys[i]), tile, int(rows[i] + win.row_off), int(cols[i] + win.col_off)) for i in pick
                        )
                        bucket.sort()
                        del bucket[k:]
        return keep

    keep = ctx.store.reading(draw, f"sampling the {level} maps")

    records = []
    for name in names:
        for _, tile, row, col in keep[values[name]]:
            grid = maps[tile].pixel_grid
            x, y = grid.affine @ (col + 0.5, row + 0.5)
            lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
            records.append(
                {
                    "latitude": round(lat, 7),
                    "longitude": round(lon, 7),
                    "tile": tile,
                    "stratum": name,
                    "map_class": name,
                    LEVELS[level]: "",
                }
            )
    frame = pd.DataFrame(records)
    frame.insert(0, "id", range(1, len(frame) + 1))
    log.info("sample design: %d points (%s)", len(frame), ", ".join(f"{c} {int(w)}" for c, w in zip(names, want)))
    return frame


def kml(frame: pd.DataFrame, title: str) -> str:
    """Placemarks with the sample's columns as ExtendedData (Google Earth, QGIS)."""
    marks = []
    for row in frame.to_dict("records"):
        data = "".join(f'<Data name="{escape(str(k))}"><value>{escape(str(v))}</value></Data>' for k, v in row.items())
        marks.append(
            f"<Placemark><name>{row['id']}</name><ExtendedData>{data}</ExtendedData>"
            f"<Point><coordinates>{row['longitude']},{row['latitude']},0</coordinates></Point></Placemark>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
        f"<name>{escape(title)}</name>" + "".join(marks) + "</Document></kml>\n"
    )


def write_points(frame: pd.DataFrame, folder: Path, name: str) -> tuple[Path, Path]:
    """``{name}.csv`` and ``{name}.kmz`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"{name}.csv"
    frame.to_csv(csv, index=False)
    kmz = folder / f"{name}.kmz"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("doc.kml", kml(frame, name))
    kmz.write_bytes(buf.getvalue())
    return csv, kmz
