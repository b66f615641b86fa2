"""Per-pixel median composites on arrays. IO lives in :mod:`landcoverpy.stages.composite`."""

from __future__ import annotations

import numpy as np


def median_composite(stack: np.ndarray) -> np.ndarray:
    """NaN-aware median over axis 0 of a ``(products, rows, cols)`` float stack.

    Same definition as ``np.nanmedian`` (with an even number of valid observations, the mean of
    the two middle values) but computed by sorting the short product axis, which is several times
    faster for the few products of a composite. Pixels with no valid observation stay NaN.
    """
    if stack.ndim != 3:
        raise ValueError(f"expected (products, rows, cols), got shape {stack.shape}")
    if stack.shape[0] == 1:
        return stack[0].astype("float32", copy=True)
    ordered = np.sort(stack.astype("float32", copy=False), axis=0)  # NaN sorts last
    n = np.count_nonzero(~np.isnan(ordered), axis=0)
    lo = np.maximum((n - 1) // 2, 0)[np.newaxis]
    hi = np.maximum(n // 2, 0)[np.newaxis]
    a = np.take_along_axis(ordered, lo, axis=0)[0]
    b = np.take_along_axis(ordered, hi, axis=0)[0]
    out = np.where(lo[0] == hi[0], a, (a + b) / np.float32(2)).astype("float32")
    out[n == 0] = np.nan
    return out


def valid_count(stack: np.ndarray) -> np.ndarray:
    """Number of valid (non-NaN) observations per pixel, uint8."""
    return np.sum(~np.isnan(stack), axis=0).astype("uint8")
