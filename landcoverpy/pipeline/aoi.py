"""Areas of interest: the Sentinel-2 tiles an area touches, the part of each tile a run over it
acquires, and one mosaic per map level clipped to the area, in a stated projected CRS, with the
class areas inside it.

The mosaic is built window by window (memory bounded by the window, not the area): every tile's
map is resampled (nearest) onto the mosaic grid, the first tile with data wins where tiles
overlap (tiles in id order, deterministic), and pixels whose centre is outside the area become
nodata. Outputs are id-addressed like every map (``aoi/{mosaic_id}/…``) with the same styles.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import shapely
from pyogrio.raw import read as ogr_read
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.warp import reproject

from landcoverpy import records, styles
from landcoverpy.assets import ids, publish
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError
from landcoverpy.raster.cog import CogWriter
from landcoverpy.raster.grid import Bounds, Grid, block_windows
from landcoverpy.records import MapRecord
from landcoverpy.reports import class_colours
from landcoverpy.scratch import scratch_dir
from landcoverpy.sentinel2 import tile_bounds, tile_of

log = logging.getLogger(__name__)

AOI_FORMAT = 1
LEVELS = ("classification", "sl_classification")


@dataclass(frozen=True)
class AreaOfInterest:
    source: str
    geometry: Any  # shapely geometry in WGS84 (lon, lat)

    @property
    def wkb_hex(self) -> str:

        return str(shapely.to_wkb(self.geometry, hex=True))


def load_aoi(path: str | Path) -> AreaOfInterest:
    """Polygons from a GeoJSON / GeoPackage / KML file (any CRS), united, in WGS84."""

    path = Path(path)
    if not path.is_file():
        raise InputValidationError(f"{path}: file not found")
    try:
        meta, _, geometry, _ = ogr_read(str(path))
    except Exception as exc:  # pyogrio's DataSourceError family
        raise InputValidationError(f"{path}: cannot read the area of interest ({exc})") from None
    geoms = [g for g in shapely.from_wkb(geometry) if g is not None]
    polys = [g for g in geoms if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polys:
        kinds = sorted({g.geom_type for g in geoms}) or ["nothing"]
        raise InputValidationError(f"{path}: the area of interest must be polygons; found {', '.join(kinds)}")
    area = shapely.union_all(polys)
    crs = meta.get("crs")
    if crs and crs not in ("EPSG:4326", "OGC:CRS84"):
        area = shapely.transform(
            area, Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform, interleaved=False
        )
    if area.is_empty or not area.is_valid:
        raise InputValidationError(f"{path}: the area of interest is empty or invalid (self-intersecting?)")
    return AreaOfInterest(str(path), area)


def tiles_for_aoi(aoi: AreaOfInterest, spacing_km: float = 2.0) -> list[str]:
    """The Sentinel-2 tiles (MGRS squares) of points sampled along the boundary and inside the
    area every ``spacing_km``: every sampled place lies in its tile, and neighbouring tiles
    overlap by about 10 km, so the tiles found cover the whole area."""

    geom = aoi.geometry
    step = spacing_km / 111.0
    points = list(shapely.get_coordinates(shapely.segmentize(geom.boundary, step)))
    minx, miny, maxx, maxy = geom.bounds
    xs = np.arange(minx, maxx + step, step)
    ys = np.arange(miny, maxy + step, step)
    grid = shapely.points(*np.meshgrid(xs, ys))
    inside = shapely.contains_xy(geom, shapely.get_x(grid), shapely.get_y(grid))
    points += list(shapely.get_coordinates(grid[inside]))
    try:
        return sorted({tile_of(float(lat), float(lon)) for lon, lat in points})
    except InputValidationError as exc:
        raise InputValidationError(f"{aoi.source}: {exc}") from None


def projected_geometry(aoi: AreaOfInterest, crs: str) -> Any:
    """The area in ``crs``; edges are densified first (every ~100 m) so the straight lon/lat edges
    of the file stay where they are once projected."""

    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return shapely.transform(shapely.segmentize(aoi.geometry, 0.001), tr.transform, interleaved=False)


def default_crs(aoi: AreaOfInterest) -> str:
    """The UTM zone (WGS84) of the area's centroid."""
    c = aoi.geometry.centroid
    zone = int(math.floor((c.x + 180) / 6)) + 1
    return f"EPSG:{32600 + zone if c.y >= 0 else 32700 + zone}"


def mosaic_grid(aoi: AreaOfInterest, crs: str, reference: Grid) -> Grid:
    """The area's bounds in ``crs``, snapped outwards to the reference map's pixel lattice when it
    is in the same CRS (so pixels coincide), else to multiples of its resolution."""

    if not CRS.from_user_input(crs).is_projected:
        raise InputValidationError(f"--aoi-crs {crs}: give a projected CRS (areas are computed in it)")
    minx, miny, maxx, maxy = projected_geometry(aoi, crs).bounds
    res = reference.resolution
    same = CRS.from_user_input(crs) == CRS.from_user_input(reference.crs)
    ox, oy = (reference.transform[2] % res, reference.transform[5] % res) if same else (0.0, 0.0)
    x0 = math.floor((minx - ox) / res) * res + ox
    y1 = math.ceil((maxy - oy) / res) * res + oy
    width = int(math.ceil((maxx - x0) / res))
    height = int(math.ceil((y1 - miny) / res))
    return Grid(CRS.from_user_input(crs).to_string(), (res, 0.0, x0, 0.0, -res, y1), width, height)


def aoi_mask(aoi: AreaOfInterest, grid: Grid, window: Any) -> np.ndarray:
    """True for pixels of the window whose centre lies inside the area."""

    projected = projected_geometry(aoi, grid.crs)
    return ~geometry_mask(
        [shapely.geometry.mapping(projected)],
        out_shape=(int(window.height), int(window.width)),
        transform=grid.window_transform(window),
        all_touched=False,
    )


def mosaic_id(aoi: AreaOfInterest, crs: str, map_ids: list[str]) -> str:
    payload = {"kind": "mosaic", "aoi": aoi.wkb_hex, "crs": crs, "maps": sorted(map_ids), "format": AOI_FORMAT}
    return f"mosaic-{ids.digest(payload)}"


def build_mosaic(
    ctx: Context, aoi: AreaOfInterest, maps: dict[str, MapRecord], crs: str | None = None, window_size: int = 1024
) -> MapRecord:
    """One COG per level over the area, clipped to it; returns (and catalogues) its record."""

    if not maps:
        raise InputValidationError(f"{aoi.source}: no map of the area's tiles to mosaic")
    crs = crs or default_crs(aoi)
    tile_maps = [maps[t] for t in sorted(maps)]
    mid = mosaic_id(aoi, crs, [r.id for r in tile_maps])
    existing = records.load(ctx.catalog, MapRecord, mid)
    if existing is not None:
        return existing
    grid = mosaic_grid(aoi, crs, tile_maps[0].pixel_grid)
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    names = {level: {v: n for n, v in tile_maps[0].class_values(level).items()} for level in LEVELS}

    outputs: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[int, int]] = {level: {} for level in LEVELS}
    with scratch_dir(ctx.settings.TMP_DIR) as tmp, ctx.store.rasterio_env():
        sources = {
            level: [
                rasterio.open(ctx.store.raster_uri(r.outputs[level].bucket, r.outputs[level].key)) for r in tile_maps
            ]
            for level in LEVELS
        }
        try:
            for level in LEVELS:
                colours = class_colours({n: v for v, n in names[level].items()})
                colormap = {0: (0, 0, 0, 0)} | {v: (*colours[v], 255) for v in names[level]}
                path = tmp / f"{level}.tif"
                with CogWriter(
                    path,
                    grid,
                    "uint8",
                    nodata=0,
                    colormap=colormap,
                    overview_resampling="mode",
                    descriptions=[f"{level} mosaic over {Path(aoi.source).name} (0 = nodata / outside)"],
                    tags={
                        "mosaic_id": mid,
                        "maps": ",".join(r.id for r in tile_maps),
                        "crs": crs,
                        "classes": json.dumps({str(v): n for v, n in names[level].items()}, ensure_ascii=False),
                    }
                    | {f"class_{v}": n for v, n in names[level].items()},
                    tmp_dir=tmp,
                ) as writer:
                    for window in block_windows(grid.height, grid.width, window_size):
                        out = np.zeros((int(window.height), int(window.width)), dtype="uint8")
                        for src in sources[level]:  # first tile with data wins
                            part = np.zeros_like(out)
                            reproject(
                                rasterio.band(src, 1),
                                part,
                                src_nodata=0,
                                dst_transform=grid.window_transform(window),
                                dst_crs=grid.crs,
                                dst_nodata=0,
                                resampling=Resampling.nearest,
                            )
                            fill = (out == 0) & (part != 0)
                            out[fill] = part[fill]
                        out[~aoi_mask(aoi, grid, window)] = 0
                        writer.write(out, window)
                        values, cnt = np.unique(out, return_counts=True)
                        for v, c in zip(values.tolist(), cnt.tolist()):
                            if v:
                                counts[level][v] = counts[level].get(v, 0) + c
                key = f"aoi/{mid}/{level}.tif"
                outputs[level] = publish.put_file(ctx.store, bucket, key, path)
                classes = {v: (n, colours[v]) for v, n in names[level].items()}
                outputs[level]["style"] = f"aoi/{mid}/{level}.qml"
                ctx.store.put_bytes(bucket, outputs[level]["style"], styles.paletted_qml(classes).encode("utf-8"))
                outputs[level]["aux"] = f"aoi/{mid}/{level}.tif.aux.xml"
                ctx.store.put_bytes(
                    bucket, outputs[level]["aux"], styles.category_aux_xml({0: "nodata"} | names[level]).encode("utf-8")
                )
        finally:
            for opened in sources.values():
                for src in opened:
                    src.close()
    pixel_km2 = grid.resolution**2 / 1e6
    record = MapRecord(
        id=mid,
        tile="aoi",
        kind="mosaic",
        aoi=aoi.source,
        aoi_wkb=aoi.wkb_hex,
        crs=grid.crs,
        maps=[r.id for r in tile_maps],
        tiles=sorted(maps),
        grid=grid.to_dict(),
        outputs=outputs,
        classes={level: {str(v): n for v, n in names[level].items()} for level in LEVELS},
        pixel_counts={
            level: {names[level].get(v, str(v)): c for v, c in sorted(counts[level].items())} for level in LEVELS
        },
        area_km2={
            level: {names[level].get(v, str(v)): round(c * pixel_km2, 4) for v, c in sorted(counts[level].items())}
            for level in LEVELS
        },
        created=publish.now_iso(),
    )
    stored = records.store(ctx.catalog, record)
    log.info(
        "mosaic %s over %s: %d tiles, %d x %d px in %s", mid, aoi.source, len(tile_maps), grid.width, grid.height, crs
    )
    return stored


def export_mosaic(ctx: Context, record: MapRecord, output_dir: Path) -> dict[str, Path]:
    out = {}
    for level, loc in record.outputs.items():
        out[level] = ctx.store.get_file(loc.bucket, loc.key, output_dir / f"{level}_aoi.tif")
        for c in loc.companions():
            out[f"{level}_{c.name}"] = ctx.store.get_file(loc.bucket, c.key, output_dir / f"{level}_aoi{c.suffix}")
    (output_dir / "aoi_areas.json").write_text(
        json.dumps(
            {"aoi": record.aoi, "crs": record.crs, "tiles": record.tiles, "area_km2": record.area_km2},
            indent=2,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    out["areas"] = output_dir / "aoi_areas.json"
    return out


ACQUISITION_MARGIN_M = 600.0  # past the area and the points: s2cloudless' averaging and dilation, sampling windows


def acquisition_windows(
    aoi: AreaOfInterest, tiles: list[str], points: list[pd.DataFrame], margin: float = ACQUISITION_MARGIN_M
) -> dict[str, Bounds]:
    """Per tile, the part of it a run over ``aoi`` needs (bounds in the tile's UTM CRS): the area
    inside the tile, and the labelled ``points`` of the tile (training and held-out: their features
    must be the whole-tile run's), grown by ``margin`` and clipped to the tile. Tiles neither
    touches are left out (whole products there)."""

    frame = pd.concat([p[["latitude", "longitude", "tile"]] for p in points], ignore_index=True) if points else None
    out: dict[str, Bounds] = {}
    for tile in tiles:
        epsg, full = tile_bounds(tile)
        parts = []
        area = projected_geometry(aoi, f"EPSG:{epsg}").intersection(shapely.box(*full))
        if not area.is_empty:
            parts.append(area.bounds)
        if frame is not None and (frame["tile"] == tile).any():
            mine = frame[frame["tile"] == tile]
            x, y = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(
                mine["longitude"].to_numpy(), mine["latitude"].to_numpy()
            )
            parts.append((float(np.min(x)), float(np.min(y)), float(np.max(x)), float(np.max(y))))
        if not parts:
            continue
        left, bottom = min(p[0] for p in parts) - margin, min(p[1] for p in parts) - margin
        right, top = max(p[2] for p in parts) + margin, max(p[3] for p in parts) + margin
        out[tile] = (max(left, full[0]), max(bottom, full[1]), min(right, full[2]), min(top, full[3]))
    return out
