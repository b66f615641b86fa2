"""Terrain derivatives on elevation arrays (metres, square cells of ``cell`` metres)."""

from __future__ import annotations

import numpy as np


def horn_gradients(z: np.ndarray, cell_x: float, cell_y: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """dz/dx (east) and dz/dy (north) with Horn's (1981) 3x3 weighted differences
    (Horn, B.K.P., Proc. IEEE 69:14-47). Rows run north to south. Edge cells are NaN; NaN
    propagates to the cells around it."""
    cell_y = cell_x if cell_y is None else cell_y
    z = np.asarray(z, dtype="float64")
    dzdx = np.full(z.shape, np.nan)
    dzdy = np.full(z.shape, np.nan)
    if z.shape[0] < 3 or z.shape[1] < 3:
        return dzdx, dzdy
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    dzdx[1:-1, 1:-1] = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * cell_x)
    dzdy[1:-1, 1:-1] = ((a + 2 * b + c) - (g + 2 * h + i)) / (8 * cell_y)  # north minus south
    return dzdx, dzdy


def slope_degrees(z: np.ndarray, cell_x: float, cell_y: float | None = None) -> np.ndarray:
    dzdx, dzdy = horn_gradients(z, cell_x, cell_y)
    return np.degrees(np.arctan(np.hypot(dzdx, dzdy))).astype("float32")


def aspect_degrees(z: np.ndarray, cell_x: float, cell_y: float | None = None) -> np.ndarray:
    """Direction the slope faces, clockwise from north (0-360); flat cells are -1 (GDAL's
    convention)."""
    dzdx, dzdy = horn_gradients(z, cell_x, cell_y)
    # downslope direction is -gradient: east component -dzdx, north component -dzdy
    aspect = np.degrees(np.arctan2(-dzdx, -dzdy)) % 360.0
    flat = (dzdx == 0) & (dzdy == 0)
    aspect[flat] = -1.0
    return aspect.astype("float32")
