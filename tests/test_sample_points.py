"""Sampling labelled points reads each group of points once per layer (one window per 512 px square
of the grid) and gives exactly the table of one read per point: same rows, same order, same values,
for points in many groups, on the grid's edges (neighbourhoods half outside), repeated, and on
missing data; points off the grid are left out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer
from rasterio.windows import Window

from landcoverpy import features
from landcoverpy.features import pixels_to_matrix, points_to_pixels, sample_points
from landcoverpy.raster.grid import Grid


class ArrayLayers:
    """Feature layers held in memory, read with FeatureReader.read's contract: (features, rows,
    cols) float32, NaN outside the grid. Counts reads."""

    def __init__(self, data: np.ndarray, grid: Grid, names: list[str]) -> None:
        self.data, self.grid, self.features, self.reads = data, grid, names, 0

    def read(self, window: Window) -> np.ndarray:
        self.reads += 1
        r0, c0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        out = np.full((self.data.shape[0], h, w), np.nan, dtype="float32")
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r0 + h, self.grid.height), min(c0 + w, self.grid.width)
        if rr1 > rr0 and cc1 > cc0:
            out[:, rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = self.data[:, rr0:rr1, cc0:cc1]
        return out


def one_read_per_point(reader: ArrayLayers, points: pd.DataFrame, neighbourhood: int) -> pd.DataFrame:
    """The reference: every layer read around every point, one point after the other."""
    half = neighbourhood // 2
    located = points_to_pixels(points, reader.grid)
    frames = []
    for pid, pt in located[located["inside"]].iterrows():
        values, valid = pixels_to_matrix(
            reader.read(Window(int(pt["col"]) - half, int(pt["row"]) - half, neighbourhood, neighbourhood))
        )
        frame = pd.DataFrame(values, columns=reader.features)
        rr, cc = np.nonzero(valid)
        frame["pixel_row"] = int(pt["row"]) - half + rr
        frame["pixel_col"] = int(pt["col"]) - half + cc
        frame["point_id"] = pid
        for col in ("latitude", "longitude", "category", "subcategory"):
            frame[col] = pt[col]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("neighbourhood", [1, 3, 5])
def test_grouped_sampling_equals_one_read_per_point(neighbourhood: int) -> None:
    rng = np.random.default_rng(neighbourhood)
    grid = Grid("EPSG:32618", (10.0, 0.0, 399960.0, 0.0, -10.0, 4200000.0), 1300, 1100)
    data = rng.normal(size=(6, grid.height, grid.width)).astype("float32")
    data[2, rng.random((grid.height, grid.width)) < 0.05] = np.nan  # cloudy pixels of one layer
    rows = np.concatenate([rng.integers(0, grid.height, 300), [0, grid.height - 1, 5, 700], [-3, 50]])
    cols = np.concatenate([rng.integers(0, grid.width, 300), [0, grid.width - 1, 5, 700], [10, grid.width + 4]])
    rows, cols = np.append(rows, rows[:3]), np.append(cols, cols[:3])  # repeated points
    x, y = 399960.0 + (cols + 0.5) * 10, 4200000.0 - (rows + 0.5) * 10
    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(x, y)
    points = pd.DataFrame(
        {
            "latitude": lat,
            "longitude": lon,
            "category": rng.choice(["a", "b"], len(rows)),
            "subcategory": rng.choice(["c", "d", "e"], len(rows)),
        }
    )
    points.index = points.index * 7 + 3  # point ids are the input's own labels
    names = [f"f{i}" for i in range(6)]
    grouped_reader, reference_reader = ArrayLayers(data, grid, names), ArrayLayers(data, grid, names)
    got = sample_points(grouped_reader, points, neighbourhood)
    want = one_read_per_point(reference_reader, points, neighbourhood)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    off_grid = set(points.index[-5:-3])  # the two points placed off the grid
    assert set(got["point_id"]) <= set(points.index) - off_grid and len(set(got["point_id"])) > 0.9 * len(points)
    groups = (-(-grid.height // features.SAMPLE_BLOCK)) * (-(-grid.width // features.SAMPLE_BLOCK))
    assert grouped_reader.reads <= groups < reference_reader.reads


def test_sampled_windows_do_not_keep_group_blocks_alive() -> None:
    """Memory stays at one group's block: the points' windows are copies, not views."""
    import tracemalloc

    grid = Grid("EPSG:32618", (10.0, 0.0, 399960.0, 0.0, -10.0, 4200000.0), 2048, 2048)
    reader = ArrayLayers(np.zeros((40, 2048, 2048), "float32"), grid, [f"f{i}" for i in range(40)])
    rows, cols = np.meshgrid(np.arange(100, 2048, 256), np.arange(100, 2048, 256))
    x, y = 399960.0 + (cols.ravel() + 0.5) * 10, 4200000.0 - (rows.ravel() + 0.5) * 10
    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(x, y)
    points = pd.DataFrame({"latitude": lat, "longitude": lon, "category": "a", "subcategory": "b"})
    tracemalloc.start()
    sample_points(reader, points, 3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    one_block = 40 * 514 * 514 * 4  # 16 groups of 4 points: a view per point would hold all 16 blocks
    assert peak < 3 * one_block, (peak, one_block)


def test_no_point_on_the_grid_gives_an_empty_table() -> None:
    grid = Grid("EPSG:32618", (10.0, 0.0, 399960.0, 0.0, -10.0, 4200000.0), 100, 100)
    reader = ArrayLayers(np.zeros((2, 100, 100), "float32"), grid, ["a", "b"])
    points = pd.DataFrame({"latitude": [10.0], "longitude": [10.0], "category": ["x"], "subcategory": ["y"]})
    table = sample_points(reader, points, 3)
    assert table.empty and list(table.columns[:2]) == ["a", "b"] and reader.reads == 0
