"""Labelled polygons (parcels, photo-interpreted plots) as training data: each polygon becomes the
10 m pixels whose centres lie inside it (all, or up to ``max_pixels`` of them, drawn at random
with a fixed seed), each a labelled point of the polygon's class. Every pixel of a polygon keeps
the polygon's id and its centroid, so spatial validation puts a polygon in one block (its
centroid's) and metrics can be reported per polygon.

Pixel centres are those of the Sentinel-2 grids: every tile of a UTM zone lies on the lattice of
multiples of 10 m, so a pixel centre is (10 i + 5, 10 j + 5) in the tile's UTM zone."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyogrio.raw import read as ogr_read
from pyproj import Transformer

from landcoverpy.errors import InputValidationError
from landcoverpy.sentinel2 import tile_bounds, tile_of

log = logging.getLogger(__name__)

PIXEL_M = 10.0
POLYGON_TYPES = ("Polygon", "MultiPolygon")
SEED = 0
COLUMNS = [  # a polygon pixel's row (see polygon_pixels)
    "latitude",
    "longitude",
    "category",
    "subcategory",
    "tile",
    "polygon_id",
    "block_latitude",
    "block_longitude",
]


def is_polygon_file(path: Path) -> bool:
    """Whether a vector file's features are polygons (it is read as labelled polygons)."""
    if path.suffix.lower() not in {".gpkg", ".geojson", ".json", ".shp", ".fgb"}:
        return False
    try:
        _meta, _fids, geometry, _fields = ogr_read(str(path), max_features=1)
    except Exception:  # not readable by OGR: the point reader reports it
        return False
    geoms = shapely.from_wkb(geometry)
    return bool(len(geoms)) and geoms[0] is not None and geoms[0].geom_type in POLYGON_TYPES


def read_polygons(path: Path, lc_property: str, sl_property: str) -> tuple[list[Any], pd.DataFrame]:
    """The polygons (in longitude/latitude) and their label columns as strings."""
    try:
        meta, _fids, geometry, fields = ogr_read(str(path))
    except Exception as exc:  # pyogrio raises its own DataSourceError family
        raise InputValidationError(f"{path}: cannot read polygons ({exc})") from None
    columns = dict(zip(meta["fields"], fields, strict=True))
    if lc_property not in columns:
        found = ", ".join(meta["fields"]) or "none"
        raise InputValidationError(f"{path}: no {lc_property!r} attribute on the polygons; found {found}")
    geoms = list(shapely.from_wkb(geometry))
    crs = meta.get("crs")
    if crs and crs not in ("EPSG:4326", "OGC:CRS84"):
        to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        geoms = [  # an empty or invalid polygon stays as it is: check_polygons names it
            g
            if g is None or g.is_empty or not g.is_valid
            else shapely.transform(shapely.segmentize(g, _step(g)), to_lonlat.transform, interleaved=False)
            for g in geoms
        ]
    empty = [""] * len(geoms)
    labels = pd.DataFrame(
        {
            "category": ["" if v is None else str(v) for v in columns[lc_property]],
            "subcategory": ["" if v is None else str(v) for v in columns.get(sl_property, empty)],
        }
    )
    return geoms, labels


def _step(geom: Any) -> float:
    minx, miny, maxx, maxy = geom.bounds
    return max(maxx - minx, maxy - miny, 1e-9) / 100


def check_polygons(geoms: list[Any], problems: list[str]) -> dict[int, str]:
    """Problems of each polygon (empty, invalid, not a polygon, outside every tile) appended to
    ``problems`` naming the feature; returns feature index -> tile of its centroid for the good ones."""
    tiles = {}
    for i, g in enumerate(geoms):
        where = f"feature {i + 1}"
        if g is None or g.is_empty:
            problems.append(f"{where}: empty geometry")
        elif g.geom_type not in POLYGON_TYPES:
            problems.append(f"{where}: a {g.geom_type}, expected Polygon or MultiPolygon")
        elif not g.is_valid:
            problems.append(f"{where}: not a valid polygon ({shapely.is_valid_reason(g)})")
        else:
            c = g.centroid
            try:
                tiles[i] = tile_of(float(c.y), float(c.x))
            except InputValidationError as exc:
                problems.append(f"{where}: {exc}")
    return tiles


def check_overlaps(geoms: list[Any], labels: pd.DataFrame, good: dict[int, str], problems: list[str]) -> None:
    """Polygons that overlap with different labels are refused (their shared pixels would get two)."""
    index = sorted(good)
    tree = shapely.STRtree([geoms[i] for i in index])
    for a in index:
        for b_pos in tree.query(geoms[a], predicate="intersects"):
            b = index[int(b_pos)]
            if b <= a:
                continue
            same = (
                labels.loc[a, ["category", "subcategory"]].tolist()
                == labels.loc[b, ["category", "subcategory"]].tolist()
            )
            if not same and shapely.area(shapely.intersection(geoms[a], geoms[b])) > 0:
                problems.append(f"features {a + 1} and {b + 1} overlap with different labels")


def pixel_centres(geom: Any, tile: str) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of the 10 m pixel centres inside ``geom`` (lon/lat) on ``tile``'s grid."""
    epsg, _ = tile_bounds(tile)
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    projected = shapely.transform(shapely.segmentize(geom, _step(geom)), to_utm.transform, interleaved=False)
    minx, miny, maxx, maxy = projected.bounds
    xs = np.arange(np.floor(minx / PIXEL_M), np.ceil(maxx / PIXEL_M)) * PIXEL_M + PIXEL_M / 2
    ys = np.arange(np.floor(miny / PIXEL_M), np.ceil(maxy / PIXEL_M)) * PIXEL_M + PIXEL_M / 2
    gx, gy = np.meshgrid(xs, ys)
    inside = shapely.contains_xy(projected, gx.ravel(), gy.ravel())
    lon, lat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform(
        gx.ravel()[inside], gy.ravel()[inside]
    )
    return np.asarray(lon), np.asarray(lat)


def polygon_pixels(
    geoms: list[Any], labels: pd.DataFrame, tiles: dict[int, str], max_pixels: int | None, problems: list[str]
) -> pd.DataFrame:
    """One row per sampled pixel: latitude, longitude, category, subcategory, tile, polygon_id
    (the feature number) and the polygon centroid's block_latitude / block_longitude."""
    rng = np.random.default_rng(SEED)
    parts = []
    for i, tile in sorted(tiles.items()):
        lon, lat = pixel_centres(geoms[i], tile)
        if not len(lon):
            problems.append(f"feature {i + 1}: covers no 10 m pixel centre (smaller than a pixel)")
            continue
        if max_pixels is not None and len(lon) > max_pixels:
            keep = np.sort(rng.choice(len(lon), max_pixels, replace=False))
            lon, lat = lon[keep], lat[keep]
        c = geoms[i].centroid
        parts.append(
            pd.DataFrame(
                {
                    "latitude": lat,
                    "longitude": lon,
                    "category": labels.at[i, "category"],
                    "subcategory": labels.at[i, "subcategory"],
                    "tile": tile,
                    "polygon_id": i + 1,
                    "block_latitude": float(c.y),
                    "block_longitude": float(c.x),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.concat(parts, ignore_index=True)
    # pixels of two overlapping polygons with the same labels: the first polygon keeps them
    return frame.drop_duplicates(["latitude", "longitude"]).reset_index(drop=True)
