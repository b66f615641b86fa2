"""Grids (CRS + transform + shape) and the windows/blocks that cut them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from affine import Affine
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
    from rasterio.crs import CRS

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
