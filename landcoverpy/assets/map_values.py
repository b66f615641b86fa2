"""Values of a stored map asset at labelled points (held-out accuracy, reference samples)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import rasterio

from landcoverpy.context import Context
from landcoverpy.features import points_to_pixels
from landcoverpy.raster.grid import Grid
from landcoverpy.records import MapRecord


def sample_map(ctx: Context, record: MapRecord, output: str, points: pd.DataFrame) -> np.ndarray:
    """The map layer's value under each point (0 off the map), read in place under the store's
    fault policy."""
    grid = Grid.from_dict(record.grid or {})
    located = points_to_pixels(points, grid)
    loc = record.outputs[output]

    def read() -> np.ndarray:
        values = np.zeros(len(points), dtype="int64")
        with ctx.store.rasterio_env(), rasterio.open(ctx.store.raster_uri(loc.bucket, loc.key)) as src:
            for i, (_, pt) in enumerate(located.iterrows()):
                if pt["inside"]:
                    r, c = int(pt["row"]), int(pt["col"])
                    values[i] = int(src.read(1, window=((r, r + 1), (c, c + 1)))[0, 0])
        return values

    return ctx.store.reading(read, f"sampling {loc.bucket}/{loc.key}")
