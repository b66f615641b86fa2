"""Benchmark: windowed composite vs the straightforward full-stack ``np.nanmedian``.

A generated full-size Sentinel-2 tile (10980 x 10980 at 10 m) with 4 L2A products whose SCL
layers carry realistic cloud fields (smoothed random fields thresholded to 15-45 % cover). Both
variants read the same files, mask clouds, apply the offset, take the per-pixel median of one
band and write it as a COG; each runs in its own process so peak RSS is its own.

    python benchmarks/composite_memory.py [--size 10980] [--workdir /tmp/lcp-bench]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

SIZE = 10980
N_PRODUCTS = 4


def cloud_field(n: int, seed: int, cover: float) -> np.ndarray:
    """A realistic-looking cloud mask: a smooth random field (blurred coarse noise) thresholded
    at the quantile giving ``cover``."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n // 64 + 2, n // 64 + 2))
    field = ndimage.zoom(ndimage.gaussian_filter(coarse, 1.5), 64, order=1)[:n, :n]
    return field > np.quantile(field, 1 - cover)


def generate(workdir: str, size: int) -> dict:
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    root = Path(workdir)
    data = root / "home" / "store" / "bench"  # the local store's layout: bucket "bench"
    data.mkdir(parents=True, exist_ok=True)
    products = []
    ground = np.random.default_rng(0)
    base = (ground.uniform(300, 3000, size=(size // 100 + 1, size // 100 + 1))).astype("float32")
    for p in range(N_PRODUCTS):
        folder = data / f"P{p}"
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng(100 + p)
        t10 = Affine(10, 0, 399960.0, 0, -10, 4200000.0)
        b02 = folder / "B02.tif"
        with rasterio.open(
            b02,
            "w",
            driver="GTiff",
            width=size,
            height=size,
            count=1,
            dtype="uint16",
            crs="EPSG:32630",
            transform=t10,
            nodata=0,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="DEFLATE",
        ) as dst:
            for row in range(0, size, 1024):
                h = min(1024, size - row)
                rows = np.arange(row, row + h) // 100
                surface = np.repeat(base[rows], 100, axis=1)[:, :size]
                dst.write(
                    (surface + rng.normal(0, 80, size=(h, size))).clip(1, 10000).astype("uint16"),
                    1,
                    window=Window(0, row, size, h),
                )
        scl_path = folder / "SCL.tif"
        n20 = size // 2
        scl = np.where(cloud_field(n20, 7 + p, cover=0.15 + 0.1 * p), 9, 4).astype("uint8")
        with rasterio.open(
            scl_path,
            "w",
            driver="GTiff",
            width=n20,
            height=n20,
            count=1,
            dtype="uint8",
            crs="EPSG:32630",
            transform=Affine(20, 0, 399960.0, 0, -20, 4200000.0),
            tiled=True,
            compress="DEFLATE",
        ) as dst:
            dst.write(scl, 1)
        products.append(
            {
                "_id": f"P{p}",
                "level": "L2A",
                "tile": "30SUF",
                "offsets": {"B02": -1000.0},
                "sensing_time": dt.datetime(2022, 4, 1 + p).isoformat(),
                "bands": {
                    "B02": {"bucket": "bench", "key": f"P{p}/B02.tif"},
                    "SCL": {"bucket": "bench", "key": f"P{p}/SCL.tif"},
                },
            }
        )
    (root / "products.json").write_text(json.dumps(products))
    return {"products": len(products)}


def windowed(workdir: str, window: int = 1024, threads: int = 1) -> dict:
    """Our pipeline: build_composite on one band, reading the products in place."""
    from landcoverpy.assets.params import CompositeParams
    from landcoverpy.config import Settings
    from landcoverpy.inputs import Season
    from landcoverpy.pipeline.composites import build_composite

    root = Path(workdir)
    settings = Settings(
        _env_file=None, LANDCOVERPY_HOME=root / "home", TMP_DIR=root / "tmp", MINIO_BUCKET_NAME_COMPOSITES="bench-out"
    )
    products = json.loads((root / "products.json").read_text())
    season = Season("s", dt.date(2022, 1, 1), dt.date(2022, 12, 31))
    rec = build_composite(
        settings,
        "30SUF",
        season,
        products,
        CompositeParams(window_size=window, threads=threads, bands=("B02",), indices=()),
    )
    return {"valid_percentage": rec["valid_percentage"]}


def full_stack(workdir: str) -> dict:
    """The straightforward way: read every product whole, mask, np.nanmedian over the stack."""
    import warnings

    import rasterio

    from landcoverpy.raster.cog import write_cog
    from landcoverpy.raster.grid import Grid
    from landcoverpy.raster.masks import scl_mask
    from landcoverpy.sentinel2 import dn_to_reflectance

    root = Path(workdir)
    products = json.loads((root / "products.json").read_text())
    layers = []
    for p in products:
        with rasterio.open(root / "home" / "store" / "bench" / p["bands"]["B02"]["key"]) as src:
            grid = Grid.from_dataset(src)
            refl = dn_to_reflectance(src.read(1), -1000.0)
        with rasterio.open(root / "home" / "store" / "bench" / p["bands"]["SCL"]["key"]) as src:
            scl = np.repeat(np.repeat(src.read(1), 2, axis=0), 2, axis=1)
        refl[scl_mask(scl)] = np.nan
        layers.append(refl)
    stack = np.stack(layers)
    del layers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        med = np.nanmedian(stack, axis=0)
    out = np.zeros(med.shape, "uint16")
    ok = ~np.isnan(med)
    out[ok] = np.clip(np.rint(med[ok] * 10000), 1, 65535)
    (root / "full").mkdir(exist_ok=True)
    write_cog(root / "full" / "B02.tif", out, grid, nodata=0, tmp_dir=str(root))
    return {"valid_percentage": round(100 * ok.mean(), 3)}


def main() -> None:
    from _common import measure, report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=SIZE)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="lcp-bench-")
    try:
        gen = measure("composite_memory", "generate", {"workdir": workdir, "size": args.size})
        print(f"generated {N_PRODUCTS} products of {args.size} x {args.size} px in {gen['seconds']:.0f} s")
        rows = {
            "full-stack np.nanmedian": measure("composite_memory", "full_stack", {"workdir": workdir}),
            f"windowed ({args.window} px)": measure(
                "composite_memory", "windowed", {"workdir": workdir, "window": args.window}
            ),
            f"windowed ({args.window} px, 2 thr)": measure(
                "composite_memory", "windowed", {"workdir": workdir, "window": args.window, "threads": 2}
            ),
        }
        results = {json.dumps(r["result"]) for r in rows.values()}
        assert len(results) == 1, results
        report(
            f"Composite of one band, {N_PRODUCTS} products, {args.size} x {args.size} px",
            rows,
            "full-stack np.nanmedian",
        )
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
