"""Compiled (numba) per-pixel loops of the composite stage and the feature reader: each does in
one pass over a window what numpy did in several full-size passes with temporaries (convert,
offset, scale, mask, stack; repeat rows then columns then copy; quantise): 3x less CPU for a
band task's pixel work (``benchmarks/pixel_ops.py``).

Every kernel gives exactly the numpy expression it replaces (same float32 operations in the
same order; tests compare them bit for bit). Imported on first use only, like
:mod:`landcoverpy.raster.sortnet`. Kernels loop over 2-D arrays; :func:`as_2d` gives any
array's 2-D view."""

from __future__ import annotations

import numba
import numpy as np


def as_2d(a: np.ndarray) -> np.ndarray:
    """The 2-D view the kernels loop over (a copy only for a non-contiguous input)."""
    return a if a.ndim == 2 else a.reshape(-1, a.shape[-1] if a.ndim else 1)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def masked_reflectance_into(
    dn: np.ndarray, offset: np.float32, quantification: np.float32, nodata: int, invalid: np.ndarray, out: np.ndarray
) -> None:
    """``out = (float32(dn) + offset) / quantification``, NaN where ``dn == nodata`` or ``invalid``."""
    rows, cols = dn.shape
    nan = np.float32(np.nan)
    for i in range(rows):
        for j in range(cols):
            d = dn[i, j]
            if invalid[i, j] or d == nodata:
                out[i, j] = nan
            else:
                out[i, j] = (np.float32(d) + offset) / quantification


@numba.njit(nogil=True, cache=True, boundscheck=False)
def quantise_into(values: np.ndarray, scale: np.floating, out: np.ndarray) -> None:
    """``out = uint16(clip(rint(values * scale), 1, 65535))``, 0 where ``values`` is NaN."""
    rows, cols = values.shape
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            if v != v:
                out[i, j] = 0
            else:
                x = np.rint(v * scale)
                out[i, j] = np.uint16(min(max(x, 1.0), 65535.0))


@numba.njit(nogil=True, cache=True, boundscheck=False)
def dequantise_into(stored: np.ndarray, scale: np.float32, out: np.ndarray) -> None:
    """``out = float32(stored) / scale``, NaN where ``stored == 0``."""
    rows, cols = stored.shape
    nan = np.float32(np.nan)
    for i in range(rows):
        for j in range(cols):
            s = stored[i, j]
            out[i, j] = nan if s == 0 else np.float32(s) / scale


@numba.njit(nogil=True, cache=True, boundscheck=False)
def upsample_into(block: np.ndarray, factor: int, row_off: int, col_off: int, out: np.ndarray) -> None:
    """``out[i, j] = block[(i + row_off) // factor, (j + col_off) // factor]``: each source pixel
    repeated ``factor`` x ``factor`` times, cut at (row_off, col_off). A source row is expanded
    once; the output rows it also covers are copies of that one."""
    rows, cols = out.shape
    cidx = np.empty(cols, dtype=np.int64)
    for j in range(cols):
        cidx[j] = (j + col_off) // factor
    last = -1
    for i in range(rows):
        r = (i + row_off) // factor
        dst = out[i]
        if r == last:
            dst[:] = out[i - 1]
        else:
            src = block[r]
            for j in range(cols):
                dst[j] = src[cidx[j]]
            last = r


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")  # x / 0: IEEE, as numpy
def normalized_difference_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = float32((a - b) / (a + b))`` in the inputs' precision, NaN where not finite."""
    rows, cols = a.shape
    nan = np.float32(np.nan)
    for i in range(rows):
        for j in range(cols):
            x = a[i, j]
            y = b[i, j]
            r = (x - y) / (x + y)
            out[i, j] = r if np.isfinite(r) else nan
