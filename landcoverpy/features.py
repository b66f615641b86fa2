"""Features: the same code builds the training table (points) and the prediction blocks (windows).

A feature is ``{season}_{layer}`` where a layer is a composite band (reflectance, float) or a
spectral index. Columns are always in :func:`feature_names` order.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from pyproj import Transformer
from rasterio.windows import Window

from landcoverpy.errors import InputValidationError, RasterError
from landcoverpy.raster.grid import Grid
from landcoverpy.raster.pixelkernels import dequantise_into
from landcoverpy.raster.reading import GDAL_CACHE_MB
from landcoverpy.records import FeatureSource
from landcoverpy.storage import ObjectStore

log = logging.getLogger(__name__)

BAND_SCALE = 10000.0


def layer_names(record: FeatureSource) -> list[str]:
    """The layers of a feature source in their canonical order: the order its parameters list
    them (``params.bands`` then ``params.indices``), never the order of a record's mapping, which
    a catalog backend may sort (the embedded one stores JSON with sorted keys)."""
    params = record.params
    order = params.get("layers") or [*params.get("bands", []), *params.get("indices", [])]
    present = [*record.bands, *record.indices]
    return [name for name in order if name in present] + sorted(name for name in present if name not in order)


def feature_names(composites: dict[str, FeatureSource]) -> list[str]:
    """``{season}_{layer}`` for every season (in the given order) and layer."""
    return [f"{season}_{layer}" for season, rec in composites.items() for layer in layer_names(rec)]


def tile_grid(composites: dict[str, FeatureSource]) -> Grid:
    grids = {season: rec.pixel_grid for season, rec in composites.items()}
    first_season, first = next(iter(grids.items()))
    for season, grid in grids.items():
        if not grid.same_as(first):
            raise RasterError(f"composites of seasons {first_season} and {season} of one tile are on different grids")
    return first


def _resolve(composites: dict[str, FeatureSource], name: str) -> tuple[FeatureSource, str]:
    """Feature name -> (composite record, layer); season names may contain underscores."""
    for season, rec in composites.items():
        prefix = f"{season}_"
        if name.startswith(prefix) and name[len(prefix) :] in layer_names(rec):
            return rec, name[len(prefix) :]
    raise RasterError(f"feature {name} has no composite layer among seasons {', '.join(composites)}")


class FeatureReader:
    """Opens every feature layer of a tile once and reads windows of all of them."""

    def __init__(self, store: ObjectStore, composites: dict[str, FeatureSource], features: list[str]) -> None:
        self.store, self.features = store, features
        self.grid = tile_grid(composites)
        self._datasets: list[tuple[Any, bool]] = []
        self._env = store.rasterio_env(GDAL_CACHEMAX=GDAL_CACHE_MB)
        self._env.__enter__()
        try:
            for name in features:
                season_rec, layer = _resolve(composites, name)
                loc, is_band = season_rec.layer(layer)
                self._datasets.append((rasterio.open(store.raster_uri(loc.bucket, loc.key)), is_band))
        except BaseException:
            self.close()
            raise

    def read(self, window: Window) -> np.ndarray:
        """(n_features, rows, cols) float32; NaN where any composite has no data or the window
        leaves the grid."""

        rows, cols = int(window.height), int(window.width)
        r0, c0 = int(window.row_off), int(window.col_off)
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r0 + rows, self.grid.height), min(c0 + cols, self.grid.width)
        inside = (rr0, cc0, rr1, cc1) == (r0, c0, r0 + rows, c0 + cols)
        # every pixel is written when the window lies inside the grid: no fill pass then
        shape = (len(self.features), rows, cols)
        out = np.empty(shape, dtype="float32") if inside else np.full(shape, np.nan, dtype="float32")
        if rr1 <= rr0 or cc1 <= cc0:
            return out
        inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
        dst = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
        for i, (ds, is_band) in enumerate(self._datasets):
            target = out[i][dst]
            if is_band:  # stored uint16 reflectance x 10000 -> float32, 0 -> NaN, in one pass
                dequantise_into(ds.read(1, window=inner), np.float32(BAND_SCALE), target)
            elif inside and ds.dtypes[0] == "float32":
                ds.read(1, window=inner, out=target)  # decoded straight into the block
            else:
                target[...] = ds.read(1, window=inner)
        return out

    def close(self) -> None:
        for ds, _ in self._datasets:
            ds.close()
        self._datasets = []
        self._env.__exit__(None, None, None)

    def __enter__(self) -> FeatureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pixels_to_matrix(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_features, rows, cols) -> (valid pixels, n_features) matrix and the boolean valid mask
    (rows, cols): a pixel is valid when every feature is finite."""
    n = block.shape[0]
    flat = block.reshape(n, -1).T
    valid = np.isfinite(flat).all(axis=1)
    return flat[valid], valid.reshape(block.shape[1:])


def points_to_pixels(points: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Add tile-CRS x/y and the row/col of each point on ``grid``; ``inside`` flags points on it."""
    to_tile = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    x, y = to_tile.transform(points["longitude"].to_numpy(), points["latitude"].to_numpy())
    inv = ~grid.affine
    cols, rows = inv @ (np.asarray(x), np.asarray(y))
    out = points.copy()
    out["x"], out["y"] = x, y
    out["row"] = np.floor(rows).astype(int)
    out["col"] = np.floor(cols).astype(int)
    out["inside"] = (out["row"] >= 0) & (out["row"] < grid.height) & (out["col"] >= 0) & (out["col"] < grid.width)
    return out


# Columns of a labelled polygon's pixels carried into the training table (see landcoverpy.polygons)
POLYGON_COLUMNS = ("polygon_id", "block_latitude", "block_longitude")
SAMPLE_BLOCK = 512  # points are read in groups of this many pixels square (one read per layer)


def sample_points(reader: FeatureReader, points: pd.DataFrame, neighbourhood: int = 3) -> pd.DataFrame:
    """One row per pixel of the ``neighbourhood x neighbourhood`` window around each point that
    lies on the grid (as the original landcoverpy: 3x3 by default). Pixels with any missing
    feature are dropped. Keeps the point's columns and a ``point_id``.

    Points are read in groups: one window per ``SAMPLE_BLOCK`` square of the grid that holds
    points (their neighbourhoods' bounding box), each layer read once per group, instead of one
    read of every layer per point (2000 points x ~60 layers decoded the same COG tiles over and
    over: 70 s for a dataset)."""
    if neighbourhood % 2 != 1:
        raise InputValidationError(f"neighbourhood must be odd, got {neighbourhood}")
    half = neighbourhood // 2
    located = points_to_pixels(points, reader.grid)
    inside = located[located["inside"]]
    columns = [
        *reader.features,
        "pixel_row",
        "pixel_col",
        "point_id",
        "latitude",
        "longitude",
        "category",
        "subcategory",
    ]
    if inside.empty:
        return pd.DataFrame(columns=columns)
    rows, cols = inside["row"].to_numpy(int), inside["col"].to_numpy(int)
    groups = (rows // SAMPLE_BLOCK) * (reader.grid.width // SAMPLE_BLOCK + 1) + cols // SAMPLE_BLOCK
    windows: dict[int, np.ndarray] = {}  # position in ``inside`` -> its (features, n, n) window
    for group in np.unique(groups):
        members = np.nonzero(groups == group)[0].tolist()
        r0, c0 = rows[members].min() - half, cols[members].min() - half
        r1, c1 = rows[members].max() + half + 1, cols[members].max() + half + 1
        block = reader.read(Window(c0, r0, c1 - c0, r1 - r0))
        for i in members:  # copies: a view would keep the whole group's block alive
            windows[i] = block[
                :, rows[i] - half - r0 : rows[i] + half + 1 - r0, cols[i] - half - c0 : cols[i] + half + 1 - c0
            ].copy()
        del block
    values, pixel_rows, pixel_cols, owners = [], [], [], []
    for i in range(len(inside)):
        matrix, valid = pixels_to_matrix(windows.pop(i))
        rr, cc = np.nonzero(valid)
        values.append(matrix)
        pixel_rows.append(rows[i] - half + rr)
        pixel_cols.append(cols[i] - half + cc)
        owners.append(np.full(len(rr), i))
    owner = np.concatenate(owners)
    if owner.size == 0:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(np.concatenate(values), columns=reader.features)
    frame["pixel_row"] = np.concatenate(pixel_rows)
    frame["pixel_col"] = np.concatenate(pixel_cols)
    frame["point_id"] = inside.index.to_numpy()[owner]
    for col in ("latitude", "longitude", "category", "subcategory", *POLYGON_COLUMNS):
        if col in inside:
            frame[col] = inside[col].to_numpy()[owner]
    return frame
