"""Per-pixel median composites on arrays. IO lives in :mod:`landcoverpy.stages.composite`."""

from __future__ import annotations

import warnings

import numpy as np


def median_composite(stack: np.ndarray) -> np.ndarray:
    """NaN-aware median over axis 0 of a ``(products, rows, cols)`` float stack.

    Pixels with no valid observation stay NaN (no warning, no crash). With an even number of
    valid observations the median is the mean of the two middle values (numpy's definition).
    """
    if stack.ndim != 3:
        raise ValueError(f"expected (products, rows, cols), got shape {stack.shape}")
    if stack.shape[0] == 1:
        return stack[0].astype("float32", copy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices
        return np.nanmedian(stack, axis=0).astype("float32")


def valid_count(stack: np.ndarray) -> np.ndarray:
    """Number of valid (non-NaN) observations per pixel, uint8."""
    return np.sum(~np.isnan(stack), axis=0).astype("uint8")
