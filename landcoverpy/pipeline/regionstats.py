"""Class statistics per region (municipalities, protected areas): pixel counts, areas in hectares
and percent, and mean confidence per region polygon and class, at both levels, computed block by
block (a full tile never needs the whole map in memory). A pixel counts for every region it lies
in (regions may overlap) and, where the maps of neighbouring tiles overlap, for one map only."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from pyogrio.raw import read as ogr_read
from pyogrio.raw import write as ogr_write
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from landcoverpy.errors import InputValidationError
from landcoverpy.models.area import area_adjusted_accuracy
from landcoverpy.raster.grid import block_windows

LEVELS = {"category": ("classification", "confidence"), "subcategory": ("sl_classification", "sl_confidence")}


@dataclass(frozen=True)
class Regions:
    """Region polygons as read: a name each (the ``field`` value, else the feature number), their
    geometries in the file's CRS, and the file's attribute columns."""

    source: str
    names: list[str]
    geometries: list[Any]
    crs: str
    fields: list[str]
    columns: list[np.ndarray]


def load_regions(path: str | Path, field: str | None = None) -> Regions:
    """Polygons of a GeoPackage / GeoJSON / Shapefile, each named by ``field``."""
    path = Path(path)
    if not path.is_file():
        raise InputValidationError(f"{path}: file not found")
    try:
        meta, _, wkb, columns = ogr_read(str(path))
    except Exception as exc:  # pyogrio's DataSourceError family
        raise InputValidationError(f"{path}: cannot read the regions ({exc})") from None
    fields = [str(f) for f in meta["fields"]]
    geoms = list(shapely.from_wkb(wkb))
    if not geoms:
        raise InputValidationError(f"{path}: no region in the file")
    for i, g in enumerate(geoms):
        if g is None or g.is_empty or g.geom_type not in ("Polygon", "MultiPolygon"):
            kind = "empty" if g is None or g.is_empty else g.geom_type
            raise InputValidationError(f"{path}: feature {i + 1} is {kind}; regions must be polygons")
        if not g.is_valid:
            raise InputValidationError(f"{path}: feature {i + 1} is not a valid polygon ({shapely.is_valid_reason(g)})")
    if field is not None and field not in fields:
        raise InputValidationError(f"{path}: no field {field!r}; the fields are {', '.join(fields) or 'none'}")
    names = [str(v) for v in columns[fields.index(field)]] if field else [str(i + 1) for i in range(len(geoms))]
    return Regions(str(path), names, geoms, str(meta.get("crs") or "EPSG:4326"), fields, list(columns))


def zonal_counts(
    classes: np.ndarray, zones: np.ndarray, n_zones: int, n_classes: int, confidence: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of each class (1..n_classes-1; 0 is no data) in each zone (1..n_zones; 0 is
    outside every region), and the sum of ``confidence`` over them: two (n_zones, n_classes)
    arrays."""
    valid = (zones > 0) & (classes > 0) & (classes < n_classes)
    idx = (zones[valid].astype(np.int64) - 1) * n_classes + classes[valid].astype(np.int64)
    size = n_zones * n_classes
    counts = np.bincount(idx, minlength=size).reshape(n_zones, n_classes)
    weights = None if confidence is None else confidence[valid].astype(np.float64)
    sums = (
        np.bincount(idx, weights=weights, minlength=size).reshape(n_zones, n_classes) if weights is not None else None
    )
    return counts, (sums if sums is not None else np.zeros((n_zones, n_classes)))


@dataclass
class LevelStats:
    """One level's statistics over all maps: counts and confidence sums per region and class."""

    classes: dict[int, str]
    counts: np.ndarray
    confidence_sums: np.ndarray
    pixel_area_m2: float


def overlap_layers(geometries: list[Any]) -> list[list[int]]:
    """The regions in layers whose members do not overlap (they may touch): each layer is
    rasterised on its own, so a pixel inside two overlapping regions counts for both."""
    tree = shapely.STRtree(geometries)
    layers: list[list[int]] = []
    layer_of: dict[int, int] = {}
    for i, g in enumerate(geometries):
        clash = set()
        for j in tree.query(g, predicate="intersects"):
            j = int(j)
            if j in layer_of and shapely.area(shapely.intersection(g, geometries[j])) > 0:
                clash.add(layer_of[j])
        k = next((k for k in range(len(layers)) if k not in clash), len(layers))
        if k == len(layers):
            layers.append([])
        layers[k].append(i)
        layer_of[i] = k
    return layers


@dataclass(frozen=True)
class TileShare:
    """Where the maps of neighbouring tiles overlap (Sentinel-2 tiles overlap by ~10 km), each
    place counts for one map only: the one whose tile centre is nearest among the maps covering
    it (ties: the smaller tile id). Footprints and centres in longitude/latitude."""

    footprints: dict[str, Any]
    centres: dict[str, tuple[float, float]]

    @classmethod
    def of(cls, grids: dict[str, Any]) -> TileShare:
        """From each tile's map grid (a :class:`~landcoverpy.raster.grid.Grid`)."""
        footprints, centres = {}, {}
        for tile, grid in grids.items():
            west, north = grid.affine @ (0, 0)
            east, south = grid.affine @ (grid.width, grid.height)
            box = shapely.segmentize(shapely.box(west, south, east, north), max(east - west, north - south) / 50)
            to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
            footprints[tile] = shapely.transform(box, to_lonlat.transform, interleaved=False)
            cx, cy = to_lonlat.transform((west + east) / 2, (south + north) / 2)
            centres[tile] = (float(cx), float(cy))
        return cls(footprints, centres)

    def rivals(self, tile: str, lonlat_box: Any) -> list[str]:
        return [t for t, f in self.footprints.items() if t != tile and f.intersects(lonlat_box)]

    def owned(self, tile: str, lon: np.ndarray, lat: np.ndarray, rivals: list[str]) -> np.ndarray:
        """Whether each place (``lon``, ``lat``) of ``tile``'s map counts for it."""
        mine = self._distance(tile, lon, lat)
        keep = np.ones(lon.shape, dtype=bool)
        for other in rivals:
            covered = shapely.contains_xy(self.footprints[other], lon, lat)
            theirs = self._distance(other, lon, lat)
            closer = (theirs < mine) | ((theirs == mine) & (other < tile))
            keep &= ~(covered & closer)
        return keep

    def _distance(self, tile: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        clon, clat = self.centres[tile]
        return ((lon - clon) * np.cos(np.radians(lat))) ** 2 + (lat - clat) ** 2


def map_level_stats(
    class_path: str,
    confidence_path: str | None,
    regions: Regions,
    classes: dict[int, str],
    block: int = 1024,
    tile: str | None = None,
    share: TileShare | None = None,
) -> LevelStats:
    """The statistics of one class map (and its confidence) over the regions, block by block:
    each block's regions are rasterised on the block's own grid (pixel centres inside a polygon
    count for it; regions that overlap each other are rasterised apart, so a pixel counts for
    every region it is in). With ``share``, a pixel where a neighbouring tile's map also lies
    counts only if it is ``tile``'s (:class:`TileShare`)."""
    n_classes = max(classes, default=0) + 1
    n_zones = len(regions.geometries)
    counts = np.zeros((n_zones, n_classes), dtype=np.int64)
    sums = np.zeros((n_zones, n_classes), dtype=np.float64)
    with rasterio.open(class_path) as src:
        conf = rasterio.open(confidence_path) if confidence_path else None
        try:
            to_map = Transformer.from_crs(regions.crs, src.crs, always_xy=True)
            to_lonlat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
            projected = [
                shapely.transform(shapely.segmentize(g, _densify_step(g)), to_map.transform, interleaved=False)
                for g in regions.geometries
            ]
            layers = [set(layer) for layer in overlap_layers(projected)]
            tree = shapely.STRtree(projected)
            pixel_area = abs(src.transform.a * src.transform.e)
            for w in block_windows(src.height, src.width, block):
                box = shapely.box(*window_bounds(w, src.transform))
                hits = tree.query(box, predicate="intersects")
                if not len(hits):
                    continue
                values = src.read(1, window=w)
                wt = window_transform(w, src.transform)
                if share is not None and tile is not None:
                    rivals = share.rivals(tile, shapely.transform(box, to_lonlat.transform, interleaved=False))
                    if rivals:
                        rr, cc = np.mgrid[0 : w.height, 0 : w.width]
                        xs, ys = wt @ (cc + 0.5, rr + 0.5)
                        lon, lat = to_lonlat.transform(np.asarray(xs), np.asarray(ys))
                        values = np.where(share.owned(tile, np.asarray(lon), np.asarray(lat), rivals), values, 0)
                confidence = conf.read(1, window=Window(w.col_off, w.row_off, w.width, w.height)) if conf else None
                for layer in layers:
                    shapes = [(projected[i], int(i) + 1) for i in sorted(hits) if int(i) in layer]
                    if not shapes:
                        continue
                    zones = rasterize(shapes, out_shape=(w.height, w.width), transform=wt, fill=0, dtype="int32")
                    c, s = zonal_counts(values, zones, n_zones, n_classes, confidence)
                    counts += c
                    sums += s
        finally:
            if conf is not None:
                conf.close()
    return LevelStats(classes, counts, sums, pixel_area)


def _densify_step(geom: Any) -> float:
    minx, miny, maxx, maxy = geom.bounds
    return max(maxx - minx, maxy - miny, 1e-9) / 200  # edges stay where they are once projected


def merge(a: LevelStats | None, b: LevelStats) -> LevelStats:
    if a is None:
        return b
    n = max(a.counts.shape[1], b.counts.shape[1])

    def pad(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, n - x.shape[1])))

    return LevelStats(
        a.classes | b.classes,
        pad(a.counts) + pad(b.counts),
        pad(a.confidence_sums) + pad(b.confidence_sums),
        a.pixel_area_m2,
    )


def rows(regions: Regions, level: str, stats: LevelStats) -> list[dict[str, Any]]:
    """One row per region and class with pixels in it: pixels, hectares, percent of the region's
    classified pixels, mean confidence."""
    out = []
    for z, name in enumerate(regions.names):
        total = int(stats.counts[z].sum())
        for value, label in sorted(stats.classes.items()):
            n = int(stats.counts[z, value]) if value < stats.counts.shape[1] else 0
            if not n:
                continue
            out.append(
                {
                    "region": name,
                    "level": level,
                    "class": label,
                    "value": value,
                    "pixels": n,
                    "area_ha": round(n * stats.pixel_area_m2 / 1e4, 4),
                    "percent": round(100.0 * n / total, 4),
                    "mean_confidence": round(float(stats.confidence_sums[z, value]) / n, 3),
                }
            )
    return out


def write_csv(table: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["region", "level", "class", "value", "pixels", "area_ha", "percent", "mean_confidence"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    return path


def write_gpkg(regions: Regions, by_level: dict[str, LevelStats], path: Path) -> Path:
    """The regions with their attributes and, per level, each class's hectares and percent
    (one layer per level)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    wkb = shapely.to_wkb(np.array(regions.geometries, dtype=object))
    multi = any(g.geom_type == "MultiPolygon" for g in regions.geometries)
    for level, stats in by_level.items():
        fields, columns = list(regions.fields), list(regions.columns)
        totals = stats.counts.sum(axis=1)
        for value, label in sorted(stats.classes.items()):
            n = stats.counts[:, value] if value < stats.counts.shape[1] else np.zeros(len(regions.names))
            fields += [f"{label} ha", f"{label} %"]
            columns += [
                (n * stats.pixel_area_m2 / 1e4).astype("float64"),
                np.where(totals > 0, 100.0 * n / np.maximum(totals, 1), 0.0).astype("float64"),
            ]
        ogr_write(
            str(path),
            wkb,
            columns,
            fields,
            layer=level,
            driver="GPKG",
            crs=regions.crs,
            geometry_type="MultiPolygon" if multi else "Polygon",
            append=path.exists(),
        )
    return path


def region_area_estimates(
    regions: Regions,
    level: str,
    stats: LevelStats,
    lon: np.ndarray,
    lat: np.ndarray,
    reference: list[str],
    mapped: np.ndarray,
    min_value: int = 1,
) -> list[dict[str, Any]]:
    """Area-adjusted class areas per region from a reference sample (Olofsson et al. 2014 applied
    to each region: the sample points inside it, as a stratified sample of its map classes, and
    the region's mapped areas as the strata weights). ``reference`` holds each point's reference
    class name, ``mapped`` the map's value under it; classes with values under ``min_value`` are
    not strata (the subcategory's "not classified"). A point counts for every region it lies in;
    regions without points get no row."""
    values = sorted(v for v in stats.classes if v >= min_value)
    names = [stats.classes[v] for v in values]
    index = {v: i for i, v in enumerate(values)}
    by_name = {n: i for i, n in enumerate(names)}
    xs, ys = Transformer.from_crs("EPSG:4326", regions.crs, always_xy=True).transform(lon, lat)
    out = []
    for z, (name, geom) in enumerate(zip(regions.names, regions.geometries, strict=True)):
        inside = shapely.contains_xy(geom, np.asarray(xs), np.asarray(ys))
        counts = np.zeros((len(values), len(values)))
        for m, ref in zip(np.asarray(mapped)[inside], np.asarray(reference, dtype=object)[inside], strict=True):
            if int(m) in index and ref in by_name:
                counts[index[int(m)], by_name[ref]] += 1
        if not counts.sum():
            continue
        pixels = np.array([stats.counts[z, v] if v < stats.counts.shape[1] else 0 for v in values], dtype=float)
        if not pixels.sum():
            continue
        est = area_adjusted_accuracy(counts, pixels, stats.pixel_area_m2 / 1e4, names)
        for i, label in enumerate(names):
            out.append(
                {
                    "region": name,
                    "level": level,
                    "class": label,
                    "sample": int(counts[i].sum()),
                    "mapped_ha": round(float(est.mapped_area[i]), 4),
                    "estimated_ha": round(float(est.area[i]), 4),
                    "ci95_ha": None if not np.isfinite(est.area_ci[i]) else round(float(est.area_ci[i]), 4),
                    "users_accuracy": None if not np.isfinite(est.users[i]) else round(float(est.users[i]), 4),
                    "producers_accuracy": (
                        None if not np.isfinite(est.producers[i]) else round(float(est.producers[i]), 4)
                    ),
                    "region_overall_accuracy": round(est.overall, 4),
                }
            )
    return out


def write_estimates_csv(table: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [
        "region",
        "level",
        "class",
        "sample",
        "mapped_ha",
        "estimated_ha",
        "ci95_ha",
        "users_accuracy",
        "producers_accuracy",
        "region_overall_accuracy",
    ]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    return path
