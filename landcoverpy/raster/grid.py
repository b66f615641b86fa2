"""Grids (CRS + transform + shape) and the windows/blocks that cut them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from rasterio.windows import transform as window_transform


@dataclass(frozen=True)
class Grid:
    crs: str
    transform: tuple[float, ...]  # affine coefficients a, b, c, d, e, f
    width: int
    height: int

    @classmethod
    def from_dataset(cls, ds: Any) -> Grid:
        return cls(crs=ds.crs.to_string(), transform=tuple(ds.transform)[:6], width=ds.width, height=ds.height)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def resolution(self) -> float:
        return abs(self.transform[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def window_transform(self, window: Window) -> Affine:
        return window_transform(window, self.affine)

    def to_dict(self) -> dict[str, Any]:
        return {"crs": self.crs, "transform": list(self.transform), "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        return cls(crs=d["crs"], transform=tuple(d["transform"]), width=int(d["width"]), height=int(d["height"]))

    def same_as(self, other: Grid, tol: float = 1e-6) -> bool:
        return (
            self.shape == other.shape
            and _same_crs(self.crs, other.crs)
            and all(abs(a - b) <= tol * max(1.0, abs(a)) for a, b in zip(self.transform, other.transform))
        )


def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True

    return bool(CRS.from_user_input(a) == CRS.from_user_input(b))


def block_windows(height: int, width: int, block: int) -> Iterator[Window]:
    """Row-major ``block x block`` windows covering the grid (edge windows are smaller)."""
    if block <= 0:
        raise ValueError("block size must be positive")
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def window_id(window: Window) -> str:
    return f"r{int(window.row_off):06d}_c{int(window.col_off):06d}"


Bounds = tuple[float, float, float, float]  # left, bottom, right, top, in the grid's CRS


def snap_bounds(bounds: Bounds, origin: tuple[float, float], step: float, limit: Bounds | None = None) -> Bounds:
    """``bounds`` grown outwards to multiples of ``step`` from ``origin`` (a tile's upper-left
    corner), then clipped to ``limit``: a window every band of a tile (10, 20, 60 m) cuts into
    whole pixels when ``step`` is their common multiple."""

    ox, oy = origin
    left = ox + math.floor((bounds[0] - ox) / step) * step
    right = ox + math.ceil((bounds[2] - ox) / step) * step
    top = oy - math.floor((oy - bounds[3]) / step) * step
    bottom = oy - math.ceil((oy - bounds[1]) / step) * step
    if limit is not None:
        left, bottom, right, top = max(left, limit[0]), max(bottom, limit[1]), min(right, limit[2]), min(top, limit[3])
    return (left, bottom, right, top)


def contains(outer: Bounds, inner: Bounds, tol: float = 1e-6) -> bool:
    return (
        outer[0] <= inner[0] + tol
        and outer[1] <= inner[1] + tol
        and outer[2] >= inner[2] - tol
        and outer[3] >= inner[3] - tol
    )


def union(a: Bounds, b: Bounds) -> Bounds:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def grid_bounds(grid: Grid) -> Bounds:
    left, top = grid.affine * (0, 0)
    right, bottom = grid.affine * (grid.width, grid.height)
    return (min(left, right), min(bottom, top), max(left, right), max(bottom, top))


def common_extent(grids: list[Grid], tol: float = 1e-6) -> Grid | None:
    """The part of ``grids`` every one covers, as a grid: when they share CRS, pixel size and
    pixel alignment (products of one tile, whole or cut to windows); None otherwise."""
    ref = grids[0]
    a, b, _, d, e, _ = ref.transform[:6]
    for g in grids[1:]:
        ga, gb, gc, gd, ge, gf = g.transform[:6]
        if not _same_crs(g.crs, ref.crs) or any(abs(x - y) > tol for x, y in ((a, ga), (b, gb), (d, gd), (e, ge))):
            return None
        dx, dy = (gc - ref.transform[2]) / a, (gf - ref.transform[5]) / e
        if abs(dx - round(dx)) > 1e-4 or abs(dy - round(dy)) > 1e-4:
            return None
    extents = [grid_bounds(g) for g in grids]
    left, bottom = max(x[0] for x in extents), max(x[1] for x in extents)
    right, top = min(x[2] for x in extents), min(x[3] for x in extents)
    if right <= left or top <= bottom:
        return None
    width, height = round((right - left) / abs(a)), round((top - bottom) / abs(e))
    return Grid(ref.crs, (a, b, left, d, e, top), width, height)
