"""The median kernel against np.nanmedian (and bottleneck.nanmedian when installed), per core
and on two threads, at 4, 8, 12 and 24 dates with 30 % gaps on 1024 x 1024 float32 windows;
every result is checked equal to np.nanmedian (bit for bit, NaN where no date is valid).

    python benchmarks/composite_kernel.py [--size 1024] [--repeat 3]

Prints megapixels per second and the ratio to np.nanmedian measured in the same run (one
thread for both; the two-thread line is ours on two threads against nanmedian on one).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from landcoverpy.raster.composite import median_composite, median_composite_numpy


def best_of(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    try:
        import bottleneck
    except ImportError:
        bottleneck = None
    rng = np.random.default_rng(0)
    median_composite(np.ones((3, 8, 8), "float32"))  # compile once, outside the timings
    print(f"median of {args.size}x{args.size} float32 windows, 30 % gaps (best of {args.repeat})")
    print(
        f"{'dates':>5} {'nanmedian':>10} {'numpy sort':>11} {'bottleneck':>11} {'ours 1 thr':>11} "
        f"{'ours 2 thr':>11} {'ratio 1':>8} {'ratio 2':>8} {'equal':>6}"
    )
    for dates in (4, 8, 12, 24):
        stack = rng.uniform(0.0, 0.6, (dates, args.size, args.size)).astype("float32")
        stack[rng.uniform(size=stack.shape) < 0.3] = np.nan
        stack[:, :16, :16] = np.nan  # all-gap pixels
        mpx = args.size * args.size / 1e6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = np.nanmedian(stack, axis=0)
            t_nan = best_of(lambda s=stack: np.nanmedian(s, axis=0), args.repeat)
        t_sort = best_of(lambda s=stack: median_composite_numpy(s), args.repeat)
        t_bn = best_of(lambda s=stack: bottleneck.nanmedian(s, axis=0), args.repeat) if bottleneck else float("nan")
        t_one = best_of(lambda s=stack: median_composite(s), args.repeat)
        t_two = best_of(lambda s=stack: median_composite(s, threads=2), args.repeat)
        equal = np.array_equal(median_composite(stack), reference, equal_nan=True) and np.array_equal(
            median_composite(stack, threads=2), reference, equal_nan=True
        )
        print(
            f"{dates:>5} {mpx / t_nan:>8.1f}Mp {mpx / t_sort:>9.1f}Mp {mpx / t_bn:>9.1f}Mp {mpx / t_one:>9.1f}Mp "
            f"{mpx / t_two:>9.1f}Mp {t_nan / t_one:>7.1f}x {t_nan / t_two:>7.1f}x {str(equal):>6}"
        )
        if not equal:
            raise SystemExit("the kernel differs from np.nanmedian")


if __name__ == "__main__":
    main()
