"""Writing one composite layer of a full tile as a COG: overviews computed window by window while
writing (:mod:`landcoverpy.raster.overviews`, now) against GDAL's COG driver computing them from the
finished file (before), alone and with a second copy running at once on the other core (what two
Dask workers do to each other).

The layer is what a composite task writes: 1024 px windows of a float32 index (NaN gaps) or a
uint16 band median (0 = nodata), ZSTD intermediate, ZSTD COG with predictor, average overviews,
one GDAL thread. Both paths get the same windows; the overview levels of both COGs are checked
equal (integers exactly, floats to float32 rounding) before anything is timed.

    python benchmarks/cog_overviews.py [--size 10980] [--repeats 2] [--tmp DIR]

Prints seconds (wall, user CPU, kernel CPU) per layer for each path and dtype, alone and two at
once, the slow-down of each when two run together, and the ratio of the paths in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GDAL_NUM_THREADS", "1")

from landcoverpy.raster.cog import CogWriter  # noqa: E402
from landcoverpy.raster.grid import Grid, block_windows  # noqa: E402
from landcoverpy.raster.overviews import halve  # noqa: E402

WINDOW = 1024


def window_data(dtype: str, seed: int = 0) -> np.ndarray:
    """A 1024 px window of realistic values: two smooth reflectance fields with sensor noise, as
    uint16 (0 where cloudy) or their normalized difference as float32 (NaN where cloudy)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:WINDOW, 0:WINDOW] / WINDOW
    red = 1500 + 900 * np.sin(6 * rows + 2 * cols) + rng.normal(0, 80, (WINDOW, WINDOW))
    nir = 2800 + 1200 * np.cos(5 * cols - 3 * rows) + rng.normal(0, 80, (WINDOW, WINDOW))
    red, nir = np.round(red).clip(1, 65535), np.round(nir).clip(1, 65535)
    cloud = (rows - 0.3) ** 2 + (cols - 0.6) ** 2 < 0.02
    if dtype == "uint16":
        out = red.astype("uint16")
        out[cloud] = 0
        return out
    ndvi = ((nir - red) / (nir + red)).astype("float32")
    ndvi[cloud] = np.nan
    return ndvi


def write_layer(path: Path, size: int, dtype: str, ours: bool) -> None:
    g = Grid(crs="EPSG:32630", transform=(10.0, 0.0, 600000.0, 0.0, -10.0, 4300020.0), width=size, height=size)
    base = window_data(dtype)
    nodata = 0 if dtype == "uint16" else float("nan")
    # "AVERAGE" (upper case) is not one the writer computes itself: GDAL's COG driver does, as before
    with CogWriter(
        path,
        g,
        dtype,
        nodata=nodata,
        overview_resampling="average" if ours else "AVERAGE",
        tmp_dir=path.parent,
        compress="ZSTD",
    ) as w:
        for k, win in enumerate(block_windows(size, size, WINDOW)):
            # each window different (shifted), as a tile's are
            w.write(np.roll(base, 37 * k, axis=1)[: int(win.height), : int(win.width)], win)


def timed(args: tuple[str, int, str, bool]) -> tuple[float, float, float]:
    folder, size, dtype, ours = args
    halve(np.zeros((4, 4), dtype), "average", 0)  # numba's compiled kernel loaded before timing, in both paths
    tmp = Path(tempfile.mkdtemp(dir=folder))
    try:
        t0, c0 = time.perf_counter(), os.times()
        write_layer(tmp / "layer.tif", size, dtype, ours)
        t1, c1 = time.perf_counter(), os.times()
        return t1 - t0, c1.user - c0.user, c1.system - c0.system
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_equal(folder: str, size: int, dtype: str) -> None:
    import rasterio

    tmp = Path(tempfile.mkdtemp(dir=folder))
    try:
        paths = {ours: tmp / f"{ours}.tif" for ours in (True, False)}
        for ours, path in paths.items():
            write_layer(path, size, dtype, ours)
        with rasterio.open(paths[True]) as a, rasterio.open(paths[False]) as b:
            assert a.overviews(1) == b.overviews(1), (a.overviews(1), b.overviews(1))
            levels = len(a.overviews(1))
        for i in range(levels):
            with rasterio.open(paths[True], overview_level=i) as a, rasterio.open(paths[False], overview_level=i) as b:
                x, y = a.read(1), b.read(1)
            if a.width * (2 ** (i + 1)) != size:  # GDAL rounds odd sizes down and resamples: compare shapes only
                assert x.shape == y.shape or abs(x.shape[0] - y.shape[0]) <= 1
                continue
            if dtype == "uint16":
                assert np.array_equal(x, y), f"level {i + 1} differs"
            else:
                np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, equal_nan=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tmp", default=None, help="scratch folder (default: the system's)")
    args = ap.parse_args()
    folder = args.tmp or tempfile.gettempdir()
    ctx = mp.get_context("spawn")
    print(
        f"one {args.size} x {args.size} layer per copy, {WINDOW} px windows, GDAL_NUM_THREADS="
        f"{os.environ['GDAL_NUM_THREADS']}",
        flush=True,
    )
    for dtype in ("float32", "uint16"):
        check_equal(folder, args.size, dtype)
        res: dict[tuple[bool, int], list[tuple[float, float, float]]] = {}
        for _ in range(args.repeats):
            for ours in (False, True):  # alternated, so a slow spell of the host hits both
                for copies in (1, 2):
                    with ctx.Pool(copies) as pool:
                        res.setdefault((ours, copies), []).extend(
                            pool.map(timed, [(folder, args.size, dtype, ours)] * copies)
                        )
        mean = {k: np.mean(np.array(v), axis=0) for k, v in res.items()}
        for ours in (False, True):
            name = "overviews while writing (now)" if ours else "GDAL's overviews (before)"
            one, two = mean[(ours, 1)], mean[(ours, 2)]
            print(
                f"{dtype:8s} {name:32s} alone {one[0]:5.2f} s ({one[1]:.2f} user, {one[2]:.2f} kernel); two at "
                f"once {two[0]:5.2f} s ({two[1]:.2f} user, {two[2]:.2f} kernel): {two[0] / one[0]:.2f}x slower",
                flush=True,
            )
        print(
            f"{dtype:8s} now vs before: {mean[(False, 1)][0] / mean[(True, 1)][0]:.2f}x alone, "
            f"{mean[(False, 2)][0] / mean[(True, 2)][0]:.2f}x two at once",
            flush=True,
        )


if __name__ == "__main__":
    main()
