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

import numpy as np

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


def _kernel() -> object:
    """The numba kernel, compiled on first use (cached on disk when the cache dir is writable)."""
    import numba

    @numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
    def median_columns(flat: np.ndarray, pairs: np.ndarray, out: np.ndarray, chunk: int) -> None:
        n, npix = flat.shape
        buf = np.empty((n, chunk), dtype=np.float32)
        count = np.empty(chunk, dtype=np.int32)
        inf = np.float32(np.inf)
        half = np.float32(2.0)
        for start in range(0, npix, chunk):
            m = min(chunk, npix - start)
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
            for p in range(m):
                k = count[p]
                if k == 0:
                    out[start + p] = np.nan
                else:
                    lo = (k - 1) // 2
                    hi = k // 2
                    a = buf[lo, p]
                    out[start + p] = a if lo == hi else (a + buf[hi, p]) / half

    return median_columns


@functools.lru_cache(maxsize=1)
def _compiled() -> object:
    return _kernel()


@functools.lru_cache(maxsize=1)
def _percentile_kernel() -> object:
    """Sorting network as in the median kernel, then each requested percentile by linear
    interpolation between the two nearest ranks of the valid dates (numpy's default method),
    computed in float64."""
    import numba

    @numba.njit(nogil=True, cache=True, boundscheck=False)
    def percentile_columns(flat: np.ndarray, pairs: np.ndarray, qs: np.ndarray, out: np.ndarray, chunk: int) -> None:
        n, npix = flat.shape
        buf = np.empty((n, chunk), dtype=np.float32)
        count = np.empty(chunk, dtype=np.int32)
        inf = np.float32(np.inf)
        for start in range(0, npix, chunk):
            m = min(chunk, npix - start)
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

    return percentile_columns


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
    _percentile_kernel()(flat, sorting_network(max(n, 1)), qs, out, CHUNK)  # type: ignore[operator]
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
    kernel = _compiled()
    pairs = sorting_network(n)
    npix = rows * cols
    if threads <= 1 or npix < 4 * CHUNK:
        kernel(flat, pairs, out, CHUNK)  # type: ignore[operator]
    else:
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, npix, threads + 1).astype(int)
        bounds = (bounds // CHUNK) * CHUNK
        bounds[-1] = npix
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda ab: kernel(flat[:, ab[0]:ab[1]], pairs, out[ab[0]:ab[1]], CHUNK),  # type: ignore[operator]
                          [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]))
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
