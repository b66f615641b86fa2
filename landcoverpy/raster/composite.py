"""Per-pixel median composites on arrays. IO lives in :mod:`landcoverpy.pipeline.composites`.

The median of a short stack (a few to a few dozen dates) is computed with a sorting network
applied across a cache-sized chunk of pixels at once (numba): gaps become +inf so they sort
last, every compare-exchange is a branch-free min/max over contiguous pixels (SIMD), and the
median is then picked by each pixel's count of valid dates. Same definition as ``np.nanmedian``
(with an even number of valid observations, the mean of the two middle values, in float32),
bit for bit; all-gap pixels stay NaN.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from landcoverpy.raster.sortnet import median_columns as kernel
from landcoverpy.raster.sortnet import percentile_columns

CHUNK = 2048  # pixels sorted together: dates x CHUNK float32 stays in L1/L2


@functools.lru_cache(maxsize=64)
def sorting_network(n: int) -> np.ndarray:
    """Batcher's odd-even merge sort comparators ``(i, j)`` (i < j) for ``n`` inputs, as an
    ``(m, 2)`` int64 array; comparators reaching past ``n`` are dropped, which is valid when the
    missing inputs are +inf (the padding sorts last)."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def percentile_composite(stack: np.ndarray, percentiles: tuple[int, ...] | list[int]) -> np.ndarray:
    """Per-pixel percentiles over axis 0 of a ``(dates, rows, cols)`` stack, gaps (NaN) left out:
    ``(len(percentiles), rows, cols)`` float32, as ``np.nanpercentile`` (linear method) gives
    them; NaN where no date is valid."""
    if stack.ndim != 3:
        raise ValueError(f"expected (dates, rows, cols), got shape {stack.shape}")
    n, rows, cols = stack.shape
    qs = np.asarray(percentiles, dtype=np.float64)
    if qs.ndim != 1 or ((qs < 0) | (qs > 100)).any():
        raise ValueError("percentiles are numbers between 0 and 100")
    flat = np.ascontiguousarray(stack, dtype=np.float32).reshape(n, rows * cols)
    out = np.empty((len(qs), rows * cols), dtype=np.float32)

    percentile_columns(flat, sorting_network(max(n, 1)), qs, out, CHUNK)
    return out.reshape(len(qs), rows, cols)


def median_composite(stack: np.ndarray, threads: int = 1) -> np.ndarray:
    """NaN-aware median over axis 0 of a ``(dates, rows, cols)`` float stack -> ``(rows, cols)``
    float32, equal to ``np.nanmedian(stack, axis=0)`` (NaN where no date is valid). With
    ``threads`` > 1 the pixels are split between threads (the kernel releases the GIL)."""
    if stack.ndim != 3:
        raise ValueError(f"expected (dates, rows, cols), got shape {stack.shape}")
    n, rows, cols = stack.shape
    if n == 0:
        raise ValueError("a median needs at least one date")
    flat = np.ascontiguousarray(stack, dtype=np.float32).reshape(n, rows * cols)
    out = np.empty(rows * cols, dtype=np.float32)
    if n == 1:
        out[:] = flat[0]
        return out.reshape(rows, cols)

    pairs = sorting_network(n)
    npix = rows * cols
    if threads <= 1 or npix < 4 * CHUNK:
        kernel(flat, pairs, out, CHUNK)
    else:
        bounds = np.linspace(0, npix, threads + 1).astype(int)
        bounds = (bounds // CHUNK) * CHUNK
        bounds[-1] = npix
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(
                pool.map(
                    lambda ab: kernel(flat[:, ab[0] : ab[1]], pairs, out[ab[0] : ab[1]], CHUNK),
                    [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a],
                )
            )
    return out.reshape(rows, cols)


def median_composite_numpy(stack: np.ndarray) -> np.ndarray:
    """The previous kernel (numpy sort along the date axis), kept as the benchmark baseline."""
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
