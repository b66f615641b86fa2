"""DEM stage: source DEM tiles (Copernicus GLO-30 or ASTER GDEM) into the store, then elevation,
slope and aspect on each Sentinel-2 tile's 10 m grid (mosaicked and reprojected window by window),
as COGs."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from distributed import as_completed
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from landcoverpy import __version__, records
from landcoverpy.assets import ids, integrity, keys, lookup, publish
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import RUN_STOPPERS, LandcoverError, ProviderError
from landcoverpy.faults import call_source
from landcoverpy.pipeline.tasks import dask_task, releases_workers, task_key
from landcoverpy.progress import step
from landcoverpy.raster.cog import CogWriter
from landcoverpy.raster.grid import Grid, block_windows
from landcoverpy.raster.terrain import aspect_degrees, slope_degrees
from landcoverpy.scratch import scratch_dir
from landcoverpy.sources.dem import DEMSource, GLO30Source
from landcoverpy.storage import open_store

log = logging.getLogger(__name__)

LAYERS = ("elevation", "slope", "aspect")


def grid_lonlat_bounds(grid: Grid) -> tuple[float, float, float, float]:
    x0, y0 = grid.affine @ (0, 0)
    x1, y1 = grid.affine @ (grid.width, grid.height)
    tr = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    xs = np.linspace(min(x0, x1), max(x0, x1), 21)
    ys = np.linspace(min(y0, y1), max(y0, y1), 21)
    xx, yy = np.meshgrid(xs, ys)
    lon, lat = tr.transform(xx.ravel(), yy.ravel())
    return float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))


def ensure_dem_tiles(ctx: Context, source: DEMSource | GLO30Source, names: list[str]) -> list[dict[str, str]]:
    """Fetch the source DEM tiles not yet stored; tiles the source lacks (sea) are skipped."""
    bucket = ctx.settings.MINIO_BUCKET_NAME_ASTER
    stored = []
    for name in names:
        key = keys.dem_source_tile_key(source.kind, name)
        if not ctx.store.exists(bucket, key):

            def fetch(name: str = name, key: str = key) -> bool:
                with source.open_tile(name) as stream:
                    if stream is None:
                        return False
                    ctx.store.put_stream(bucket, key, stream)
                    return True

            if not call_source(source, f"DEM tile {name}", fetch, ctx.settings.OUTAGE_TOLERANCE):
                log.info("%s: no tile in %s (sea?), skipped", name, source.describe())
                continue
            with ctx.store.rasterio_env(), rasterio.open(ctx.store.raster_uri(bucket, key)) as src:
                if src.count < 1 or src.crs is None:
                    ctx.store.delete(bucket, key)
                    raise ProviderError(f"{name}: not a georeferenced DEM")
        stored.append({"bucket": bucket, "key": key})
    return stored


def _elevation_window(store: Any, sources: list[dict[str, str]], grid: Grid, window: Window) -> np.ndarray:
    out = np.full((int(window.height), int(window.width)), np.nan, dtype="float32")
    for loc in sources:
        with rasterio.open(store.raster_uri(loc["bucket"], loc["key"])) as src:
            part = np.full(out.shape, np.nan, dtype="float32")
            reproject(
                rasterio.band(src, 1),
                part,
                src_nodata=src.nodata,
                dst_transform=grid.window_transform(window),
                dst_crs=grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
        fill = np.isnan(out) & ~np.isnan(part)
        out[fill] = part[fill]
    return out


def _halo_elevation(store: Any, sources: list[dict[str, str]], grid: Grid, window: Window) -> np.ndarray:
    """Elevation of ``window`` with a one-pixel halo on every side, beyond the grid's edge too
    (the DEM mosaic covers more than the tile), so Horn's slope and aspect exist on the tile's
    outermost pixels instead of a NaN ring in every map made with them. Where the halo lies
    outside the grid and the mosaic has no value there either, it repeats the edge pixel (flat
    outwards). Inside the grid the halo is the neighbouring windows' elevation: windowed == whole."""
    grown = Window(int(window.col_off) - 1, int(window.row_off) - 1, int(window.width) + 2, int(window.height) + 2)
    z = _elevation_window(store, sources, grid, grown)
    edge = np.pad(z[1:-1, 1:-1], 1, mode="edge")
    outside = np.zeros(z.shape, dtype=bool)
    if window.row_off == 0:
        outside[0] = True
    if window.col_off == 0:
        outside[:, 0] = True
    if window.row_off + window.height >= grid.height:
        outside[-1] = True
    if window.col_off + window.width >= grid.width:
        outside[:, -1] = True
    missing = outside & np.isnan(z)
    z[missing] = edge[missing]
    return z


@dask_task
def build_dem(
    settings: Settings, tile: str, grid: Grid, sources: list[dict[str, str]], window_size: int = 1024
) -> records.DemRecord:
    """Dask task: elevation (bilinear from the source DEM mosaic), slope and aspect (Horn) on
    ``grid``, window by window with a one-pixel halo (:func:`_halo_elevation`) so windowed ==
    whole and the tile's edge pixels have a slope."""
    store = open_store(settings, check=False)
    did = dem_id(tile, grid, sources)
    bucket = settings.MINIO_BUCKET_NAME_DEM
    with scratch_dir(settings.TMP_DIR) as tmp, store.rasterio_env():
        paths = {name: Path(tmp) / f"{name}.tif" for name in LAYERS}
        units = {"elevation": "metres", "slope": "degrees", "aspect": "degrees clockwise from north, -1 flat"}
        writers = {
            name: CogWriter(
                paths[name],
                grid,
                "float32",
                nodata=float("nan"),
                descriptions=[f"{name} ({units[name]})"],
                tags={"tile": tile, "dem_id": did, "sources": ",".join(s["key"] for s in sources)},
                overview_resampling="average",
                tmp_dir=tmp,
            )
            for name in LAYERS
        }
        with contextlib.ExitStack() as stack:  # a failure closes the writers without making COGs
            for w in writers.values():
                stack.enter_context(w)
            for window in block_windows(grid.height, grid.width, window_size):
                z = _halo_elevation(store, sources, grid, window)
                rs, cs = slice(1, -1), slice(1, -1)
                writers["elevation"].write(z[rs, cs], window)
                writers["slope"].write(slope_degrees(z, grid.resolution)[rs, cs], window)
                writers["aspect"].write(aspect_degrees(z, grid.resolution)[rs, cs], window)
        layers = {
            name: publish.put_file(store, bucket, keys.dem_layer_key(tile, did, name), path)
            for name, path in paths.items()
        }
    return records.DemRecord(
        id=did,
        tile=tile,
        grid=grid.to_dict(),
        layers=layers,
        sources=sources,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        code_version=__version__,
    )


def dem_id(tile: str, grid: Grid, sources: list[dict[str, str]]) -> str:
    return ids.dem_id(tile, grid.to_dict(), [s["key"] for s in sources])


@releases_workers
def dem_stage(
    ctx: Context, tiles: list[str], source: DEMSource | GLO30Source, client: Any, progress: bool = False
) -> dict[str, str]:
    """DEM derivatives for every tile with products or composites; returns tile -> status."""
    status: dict[str, str] = {}
    futures = {}
    for tile in tiles:
        with ctx.store.rasterio_env():
            grid = lookup.tile_grid(ctx, tile)
        if grid is None:
            status[tile] = "skipped: no products or composites to take the grid from"
            continue
        names = source.tiles_for_bounds(*grid_lonlat_bounds(grid))
        sources = ensure_dem_tiles(ctx, source, names)
        if not sources:
            status[tile] = f"skipped: none of {', '.join(names) or 'its DEM tiles'} in {source.describe()}"
            continue
        did = dem_id(tile, grid, sources)
        existing = records.load(ctx.catalog, records.DemRecord, did)
        if existing is not None and integrity.reusable(ctx, existing):
            status[tile] = f"reused {did}"
            continue
        futures[client.submit(build_dem, ctx.settings, tile, grid, sources, key=task_key(f"dem-{did}"), pure=False)] = (
            tile
        )

    with step(log, "dem: elevation, slope, aspect", len(futures), "tile", progress) as bar:
        for fut in as_completed(list(futures)):
            tile = futures[fut]
            try:
                rec = fut.result()
                records.store(ctx.catalog, rec)
                status[tile] = f"built {rec.id}"
            except RUN_STOPPERS:  # an outage past OUTAGE_TOLERANCE, a full disk: no other tile can pass
                raise
            except LandcoverError as exc:
                status[tile] = f"failed: {exc}"
            bar.update(1)
    return status
