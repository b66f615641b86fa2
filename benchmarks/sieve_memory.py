"""Benchmark: the vector maps' sieve (``vectorize.sieve_map``) against sieving the whole map as an
array (``rasterio.features.sieve`` on ``src.read(1)``, the straightforward way).

A generated full-size Sentinel-2 tile class map (10980 x 10980 at 10 m, 6 classes): smooth
patches of classes with 2 % of pixels flipped to another class (specks the sieve removes) and a
nodata band along one edge, as a tiled deflate GeoTIFF like the maps. Each variant runs in its
own process; peak RSS is its own, and peak anonymous memory (sampled from /proc every 20 ms,
above the process's own once its modules are loaded) leaves out the file-backed pages of the
memory-mapped output, which the kernel writes back and drops under memory pressure. Both outputs
must be equal pixel for pixel.

    python benchmarks/sieve_memory.py [--size 10980] [--mmu 50] [--workdir /tmp/lcp-bench]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 10980


def make_map(path: Path, n: int, seed: int = 0) -> None:
    """Write the generated class map block by block (a strip of rows at a time)."""
    import rasterio
    from rasterio.transform import from_origin
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 7, (n // 40 + 2, n // 40 + 2)).astype("uint8")
    profile = {
        "driver": "GTiff",
        "width": n,
        "height": n,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32630",
        "transform": from_origin(300000, 4200000, 10, 10),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    strip = 1024
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, n, strip):
            h = min(strip, n - r)
            rows = (np.arange(r, r + h) / 40).astype(int)
            cols = (np.arange(n) / 40).astype(int)
            values = coarse[rows][:, cols]
            values = ndimage.median_filter(values, size=(1, 3))
            flip = rng.random(values.shape) < 0.02
            values[flip] = rng.integers(1, 7, int(flip.sum()))
            values[:, : n // 50] = 0  # outside the footprint
            dst.write(values, 1, window=rasterio.windows.Window(0, r, n, h))


class AnonPeak:
    """Peak RssAnon of this process while the block runs, above what it was when it began
    (sampled in a thread)."""

    def __init__(self) -> None:
        self.peak_kib = self.start_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                self.peak_kib = max(self.peak_kib, int(line.split()[1]))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.02)

    def __enter__(self) -> AnonPeak:
        self._sample()
        self.start_kib = self.peak_kib
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def whole_array(src: str, out: str, mmu: int) -> dict[str, float]:
    import rasterio
    from rasterio.features import sieve

    import landcoverpy.pipeline.vectorize  # noqa: F401 - the same modules loaded as the other variant

    with AnonPeak() as anon:
        with rasterio.open(src) as ds:
            profile = ds.profile
            data = ds.read(1)
        sieved = sieve(data, mmu, mask=data != 0, connectivity=4)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(sieved, 1)
    return {"anon_mib": (anon.peak_kib - anon.start_kib) / 1024}


def streamed(src: str, out: str, mmu: int) -> dict[str, float]:
    from landcoverpy.pipeline.vectorize import sieve_map

    with AnonPeak() as anon:
        sieve_map(src, Path(out), mmu)
    return {"anon_mib": (anon.peak_kib - anon.start_kib) / 1024}


def same(a: Path, b: Path) -> bool:
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        for _, w in x.block_windows(1):
            if not np.array_equal(x.read(1, window=w), y.read(1, window=w)):
                return False
    return True


def main() -> None:
    from _common import measure

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--mmu", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lcp-sieve-", dir=args.workdir))
    try:
        src = work / "map.tif"
        make_map(src, args.size)
        rows = {}
        for name, func in (("whole map as an array", "whole_array"), ("sieve_map (streamed)", "streamed")):
            out = work / f"{func}.tif"
            rows[name] = measure("sieve_memory", func, {"src": str(src), "out": str(out), "mmu": args.mmu})
        equal = same(work / "whole_array.tif", work / "streamed.tif")
        base = rows["whole map as an array"]
        print(f"\nsieve of a {args.size} x {args.size} class map, MMU {args.mmu} px ({dt.date.today()})")
        print(f"{'variant':<24}{'seconds':>9}{'peak RSS MiB':>14}{'peak anon MiB':>15}{'anon ratio':>12}")
        for name, r in rows.items():
            anon = r["result"]["anon_mib"]
            print(
                f"{name:<24}{r['seconds']:>9.1f}{r['peak_rss_mib']:>14.0f}{anon:>15.0f}"
                f"{base['result']['anon_mib'] / anon:>12.2f}"
            )
        print(f"outputs equal pixel for pixel: {equal}")
        if not equal:
            raise SystemExit("the two sieves differ")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
