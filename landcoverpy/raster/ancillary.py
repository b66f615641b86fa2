"""Ancillary variables of abundance models on the coarse (MODIS) grid: pixel coordinates, any
raster, WorldClim climate normals and the DEM stage's altitude and slope. A source is a string
recorded with the dataset and read again at prediction: a raster path or URI,
``worldclim:ROOT#variable[@res]`` (:mod:`landcoverpy.sources.worldclim`), or
``mosaic:["uri", ...]`` (the DEM stage's tiles, first value wins where they overlap)."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from landcoverpy.errors import InputValidationError
from landcoverpy.raster.grid import Grid
from landcoverpy.sources import worldclim
from landcoverpy.sources.worldclim import VARIABLES, WorldClim


def read_on_grid(
    path: str,
    grid: Grid,
    resampling: Resampling = Resampling.average,
    band: int | None = None,
    window: Window | None = None,
) -> np.ndarray:
    """A raster (all bands, or ``band``) reprojected onto ``grid`` (or a window of it), float32,
    NaN where the source has no data or does not reach."""
    win = window or Window(0, 0, grid.width, grid.height)
    h, w = int(win.height), int(win.width)
    with rasterio.open(path) as src:
        bands = [band] if band else list(range(1, src.count + 1))
        out = np.full((len(bands), h, w), np.nan, dtype="float32")
        for i, b in enumerate(bands):
            reproject(
                rasterio.band(src, b),
                out[i],
                src_nodata=src.nodata,
                dst_transform=grid.window_transform(win),
                dst_crs=grid.crs,
                dst_nodata=np.nan,
                resampling=resampling,
            )
    return out


def resampling_for(path: str, grid: Grid) -> Resampling:
    """``average`` where the source is finer than the grid, ``bilinear`` where it is coarser
    (degrees counted as 111.32 km, enough to tell 1 km climate from 30 m DEM)."""
    with rasterio.open(path) as src:
        size = abs(src.transform.a)
        if src.crs is not None and src.crs.is_geographic:
            size *= 111_320.0
    return Resampling.average if size <= grid.resolution else Resampling.bilinear


MOSAIC = "mosaic:"


def read_ancillary(
    spec: str, grid: Grid, window: Window, lat: np.ndarray, cache: dict[tuple[str, ...], np.ndarray]
) -> np.ndarray:
    """One ancillary variable on a window of the grid (h, w): a raster path, a WorldClim climate
    variable (``worldclim:ROOT#variable``) or a mosaic of rasters (``mosaic:["uri", ...]``, the
    first value wins where they overlap: the DEM stage's tiles)."""

    h, w = int(window.height), int(window.width)
    if spec.startswith(worldclim.PREFIX):
        wc, variable = worldclim.WorldClim.from_spec(spec)
        monthly = {}
        for var in worldclim.NEEDS[variable]:
            key = (wc.root, wc.res or "", var)
            if key not in cache:
                layers = []
                for month in range(1, 13):
                    path = wc.layer(var, month)
                    layers.append(read_on_grid(path, grid, resampling_for(path, grid), band=1, window=window)[0])
                cache[key] = np.stack(layers)
            monthly[var] = cache[key]
        return worldclim.climate_variable(variable, monthly, lat.reshape(h, w))
    if spec.startswith(MOSAIC):
        out = np.full((h, w), np.nan, "float32")
        for uri in json.loads(spec[len(MOSAIC) :]):
            part = read_on_grid(uri, grid, resampling_for(uri, grid), band=1, window=window)[0]
            out = np.where(np.isfinite(out), out, part)
        return out
    return read_on_grid(spec, grid, resampling_for(spec, grid), band=1, window=window)[0]


def ancillary_layers(
    paths: dict[str, str], grid: Grid, window: Window | None = None, coordinates: bool = True
) -> tuple[np.ndarray, list[str]]:
    """(pixels, A) ancillary values on the coarse grid: longitude and latitude of the pixel
    centre, then each given source (a raster, a WorldClim variable or the DEM stage's mosaic)
    resampled onto the grid. A source that does not cover every pixel of the area is an error
    naming it."""

    win = window or Window(0, 0, grid.width, grid.height)
    cols, names = [], []
    rr, cc = np.mgrid[0 : int(win.height), 0 : int(win.width)]
    xs, ys = grid.window_transform(win) @ (cc + 0.5, rr + 0.5)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    lon, lat = np.asarray(lon, "float32").ravel(), np.asarray(lat, "float32").ravel()
    if coordinates:
        cols += [lon, lat]
        names += ["longitude", "latitude"]
    cache: dict[tuple[str, ...], np.ndarray] = {}
    for name, spec in paths.items():
        values = read_ancillary(spec, grid, win, lat, cache)
        if np.isnan(values).any():
            raise InputValidationError(
                f"ancillary raster {name} ({spec}) does not cover the area: {int(np.isnan(values).sum())} of "
                f"{values.size} pixels have no value; give a raster that covers the whole time-series grid"
            )
        cols.append(values.ravel().astype("float32"))
        names.append(name)
    return np.stack(cols, axis=1).astype("float32"), names


def climate_ancillaries(root: str, res: str | None = None) -> dict[str, str]:
    """The five WorldClim ancillaries (precipitation, pet, tmean, tmax, tmin) of a folder/URL."""

    wc = WorldClim(root, res)
    return {v: wc.spec(v) for v in VARIABLES}
