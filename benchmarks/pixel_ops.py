"""The per-window pixel work of a composite band task, numpy passes (as before) against the
compiled one-pass kernels (:mod:`landcoverpy.raster.pixelkernels`), alone and with a second
copy running at once on the other core (what two Dask workers do to each other).

A window is what a band task does between decoding and encoding: for each of 4 products, the
20 m SCL window turned into the 10 m invalid mask, the band's digital numbers into masked
reflectance in the date stack (a 10 m band, and a 20 m band repeated onto the 10 m grid), then
the median and the uint16 quantisation; also the index step (dequantise two stored bands, a
normalized difference). Generated arrays, no file IO, so only the pixel work is timed.

    python benchmarks/pixel_ops.py [--size 1024] [--windows 12]

Prints CPU milliseconds per window for each path, alone and two at once, the slow-down of each
when two run together, and the ratio of the paths measured in the same run; every kernel output
is checked equal to the numpy path's first.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np

from landcoverpy.pipeline.composites import dequantise, to_uint16_reflectance
from landcoverpy.raster import masks
from landcoverpy.raster.composite import median_composite
from landcoverpy.raster.indices import _ratio, normalized_difference
from landcoverpy.raster.pixelkernels import upsample_into
from landcoverpy.sentinel2 import dn_to_reflectance, masked_reflectance

PRODUCTS = 4


def inputs(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    half = size // 2
    scl = rng.choice(
        np.array([4, 5, 6, 8, 9, 3, 0], dtype="uint8"),
        p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05],
        size=(PRODUCTS, half, half),
    )
    return {
        "scl": scl,
        "b10": rng.integers(1000, 6000, size=(PRODUCTS, size, size)).astype("uint16"),
        "b20": rng.integers(1000, 6000, size=(PRODUCTS, half, half)).astype("uint16"),
        "stored": rng.integers(1, 5000, size=(2, size, size)).astype("uint16"),
    }


def repeat2(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(np.repeat(a, 2, axis=0), 2, axis=1))


def numpy_window(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The steps as numpy passes (the code before the kernels)."""
    out = {}
    invalid = [np.isin(repeat2(s), masks.DEFAULT_SCL_CLASSES + masks.SCL_NODATA_CLASSES) for s in d["scl"]]
    for name, dn in (("b10", d["b10"]), ("b20", [repeat2(b) for b in d["b20"]])):
        stack = np.stack([masks.apply_mask(dn_to_reflectance(x, -1000.0), inv) for x, inv in zip(dn, invalid)])
        m = median_composite(stack)
        q = np.zeros(m.shape, dtype="uint16")
        ok = ~np.isnan(m)
        q[ok] = np.clip(np.rint(m[ok] * 10000.0), 1, 65535).astype("uint16")
        out[name] = q
    a, b = (s.astype("float32") / np.float32(10000.0) for s in d["stored"])
    a[d["stored"][0] == 0] = np.nan
    b[d["stored"][1] == 0] = np.nan
    out["index"] = _ratio(a - b, a + b)
    return out


def kernel_window(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same with the workflow's kernels."""
    size = d["b10"].shape[1]
    table = masks.scl_table(masks.DEFAULT_SCL_CLASSES)
    invalid = []
    for s in d["scl"]:
        inv = np.empty((size, size), dtype=bool)
        upsample_into(table[s], 2, 0, 0, inv)
        invalid.append(inv)
    out = {}
    for name in ("b10", "b20"):
        stack = np.empty((PRODUCTS, size, size), dtype="float32")
        for i, inv in enumerate(invalid):
            dn = d[name][i]
            if name == "b20":
                up = np.empty((size, size), dtype=dn.dtype)
                upsample_into(dn, 2, 0, 0, up)
                dn = up
            masked_reflectance(dn, -1000.0, inv, out=stack[i])
        out[name] = to_uint16_reflectance(median_composite(stack))
    a, b = (dequantise(s) for s in d["stored"])
    out["index"] = normalized_difference(a, b)
    return out


PATHS = {"numpy passes": numpy_window, "kernels": kernel_window}


def cpu_per_window(path: str, size: int, windows: int, start: float) -> float:
    d = inputs(size)
    PATHS[path](d)  # compile / warm up
    while time.time() < start:  # both copies start together
        time.sleep(0.001)
    t = time.process_time()
    for _ in range(windows):
        PATHS[path](d)
    return (time.process_time() - t) / windows


def measure(path: str, size: int, windows: int, copies: int) -> float:
    ctx = mp.get_context("spawn")
    with ctx.Pool(copies) as pool:
        start = time.time() + 8.0  # past every copy's import and warm-up
        results = [pool.apply_async(cpu_per_window, (path, size, windows, start)) for _ in range(copies)]
        return float(np.mean([r.get() for r in results]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--windows", type=int, default=12)
    args = ap.parse_args()
    d = inputs(args.size)
    ref, got = numpy_window(d), kernel_window(d)
    for name in ref:
        if not np.array_equal(ref[name], got[name], equal_nan=True):
            raise SystemExit(f"kernel output {name} differs from the numpy passes")
    print(f"{args.size} x {args.size} px windows, {PRODUCTS} products; outputs equal", flush=True)
    res = {}
    for path in PATHS:
        alone = measure(path, args.size, args.windows, 1)
        both = measure(path, args.size, args.windows, 2)
        res[path] = (alone, both)
        print(
            f"{path:<13} alone {1000 * alone:7.1f} ms CPU per window, two at once {1000 * both:7.1f} "
            f"({both / alone:.2f}x slower)",
            flush=True,
        )
    (a0, b0), (a1, b1) = res["numpy passes"], res["kernels"]
    print(f"kernels vs numpy passes: {a0 / a1:.2f}x less CPU alone, {b0 / b1:.2f}x two at once")


if __name__ == "__main__":
    main()
