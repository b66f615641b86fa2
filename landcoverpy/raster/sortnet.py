"""The compiled (numba) kernels behind :mod:`landcoverpy.raster.composite`: one sorting step
shared by the median and the percentile kernels. Imported on first use only, so that importing
the composite module does not load numba."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _sort_chunk(flat: np.ndarray, pairs: np.ndarray, buf: np.ndarray, count: np.ndarray, start: int, m: int) -> None:
    """Load pixels ``start .. start + m`` of ``flat`` (dates x pixels) into ``buf`` with gaps
    (NaN) as +inf, count each pixel's valid dates into ``count``, then sort every pixel's dates
    with the comparators ``pairs``: a branch-free min/max over contiguous pixels per comparator,
    so the valid values end up first, in order."""
    n = flat.shape[0]
    inf = np.float32(np.inf)
    for p in range(m):
        count[p] = 0
    for d in range(n):
        for p in range(m):
            v = flat[d, start + p]
            ok = v == v
            buf[d, p] = v if ok else inf
            count[p] += ok
    for c in range(pairs.shape[0]):
        i = pairs[c, 0]
        j = pairs[c, 1]
        for p in range(m):
            a = buf[i, p]
            b = buf[j, p]
            buf[i, p] = min(a, b)
            buf[j, p] = max(a, b)


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def median_columns(flat: np.ndarray, pairs: np.ndarray, out: np.ndarray, chunk: int) -> None:
    """Median of each column of ``flat`` over its valid rows (``np.nanmedian``'s definition,
    float32); NaN where none is valid."""
    n, npix = flat.shape
    buf = np.empty((n, chunk), dtype=np.float32)
    count = np.empty(chunk, dtype=np.int32)
    half = np.float32(2.0)
    for start in range(0, npix, chunk):
        m = min(chunk, npix - start)
        _sort_chunk(flat, pairs, buf, count, start, m)
        for p in range(m):
            k = count[p]
            if k == 0:
                out[start + p] = np.nan
            else:
                lo = (k - 1) // 2
                hi = k // 2
                a = buf[lo, p]
                out[start + p] = a if lo == hi else (a + buf[hi, p]) / half


@numba.njit(nogil=True, cache=True, boundscheck=False)
def percentile_columns(flat: np.ndarray, pairs: np.ndarray, qs: np.ndarray, out: np.ndarray, chunk: int) -> None:
    """Each percentile in ``qs`` of each column of ``flat`` over its valid rows, by linear
    interpolation between the two nearest ranks (numpy's default method) in float64; NaN where
    none is valid."""
    n, npix = flat.shape
    buf = np.empty((n, chunk), dtype=np.float32)
    count = np.empty(chunk, dtype=np.int32)
    for start in range(0, npix, chunk):
        m = min(chunk, npix - start)
        _sort_chunk(flat, pairs, buf, count, start, m)
        for qi in range(qs.shape[0]):
            q = qs[qi]
            for p in range(m):
                k = count[p]
                if k == 0:
                    out[qi, start + p] = np.nan
                    continue
                pos = (k - 1) * q / 100.0
                lo = int(np.floor(pos))
                hi = min(lo + 1, k - 1)
                t = pos - lo
                a = np.float64(buf[lo, p])
                b = np.float64(buf[hi, p])
                # numpy's lerp: a + (b - a) t, from the other end when t >= 0.5
                v = a + (b - a) * t if t < 0.5 else b - (b - a) * (1.0 - t)
                out[qi, start + p] = np.float32(v)
