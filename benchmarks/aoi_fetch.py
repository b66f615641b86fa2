"""Benchmark: what an area of interest fetches. One L2A product of a full Sentinel-2 tile (13 COGs
at their native resolutions, DEFLATE, tiled in 512 or 1024 px as catalogs serve them) behind a
STAC API process on loopback; `fetch_product` with the windows square areas of several sizes
need, in the middle of the tile (not aligned on COG tiles). Prints, per COG tiling and area, the
bytes fetched against the window's share of the product's bytes (the ratio the issue bounds at
1.5) and against the whole product.

    python benchmarks/aoi_fetch.py [--size 10980] [--areas-km 5,10,20,40] [--blocks 512,1024]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

X0, Y1 = 399960.0, 4200000.0  # 30SUF's corner


def make_product(root: Path, size: int, block: int) -> int:
    """Band files (smooth fields plus noise, so they compress like imagery) and an Earth
    Search-shaped item; returns the product's bytes."""
    import numpy as np
    import rasterio
    from affine import Affine

    from landcoverpy.raster.cog import translate_to_cog
    from landcoverpy.sentinel2 import BAND_RESOLUTION, L2A_BANDS
    from landcoverpy.sources.stac_profiles import COMMON_NAMES

    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    keys = {band: key for key, band in COMMON_NAMES.items() if band in L2A_BANDS}
    assets = {}
    for band in L2A_BANDS:
        res = BAND_RESOLUTION[band]
        n = size * 10 // res
        dtype = "uint8" if band == "SCL" else "uint16"
        raw, path = root / f"{band}.raw.tif", files / f"{band}.tif"
        with rasterio.open(
            raw,
            "w",
            driver="GTiff",
            width=n,
            height=n,
            count=1,
            dtype=dtype,
            crs="EPSG:32630",
            transform=Affine(res, 0, X0, 0, -res, Y1),
            tiled=True,
        ) as dst:
            for row in range(0, n, 1024):
                h = min(1024, n - row)
                rows = np.arange(row, row + h)[:, None]
                field = 1500 + 800 * np.sin(rows / 97.0) * np.cos(np.arange(n)[None, :] / 131.0)
                values = field + rng.normal(0, 60, (h, n)) if dtype == "uint16" else (field // 400 + 1)
                dst.write(values.clip(1, 60000).astype(dtype), 1, window=rasterio.windows.Window(0, row, n, h))
        translate_to_cog(raw, path, dtype, blocksize=block)
        raw.unlink()
        assets[keys[band]] = {"href": "{BASE}/files/" + path.name, "file:size": path.stat().st_size}
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "collection": "sentinel-2-l2a",
        "id": "bench",
        "geometry": None,
        "bbox": None,
        "links": [],
        "assets": assets,
        "properties": {
            "datetime": "2021-04-01T11:00:00Z",
            "eo:cloud_cover": 1.0,
            "grid:code": "MGRS-30SUF",
            "s2:processing_baseline": "04.00",
            "s2:product_uri": "S2B_MSIL2A_20210401T110000_N0400_R008_T30SUF_bench",
        },
    }
    (root / "items.json").write_text(json.dumps([item]))
    return sum(p.stat().st_size for p in files.iterdir())


def fetch(stac_url: str, home: Path, bounds: tuple[float, float, float, float]) -> dict:
    from landcoverpy.config import Settings
    from landcoverpy.pipeline.acquire import fetch_product
    from landcoverpy.sources.stac import STACProvider

    settings = Settings(_env_file=None, LANDCOVERPY_HOME=home, TMP_DIR=home / "tmp")
    provider = STACProvider(url=stac_url, profile="generic", collection="sentinel-2-l2a")
    cand = provider.search("30SUF", dt.date(2021, 3, 1), dt.date(2021, 5, 1))[0]
    rec = fetch_product(settings, provider, cand, bounds)
    return {"fetched": rec["fetched_bytes"], "window": rec["window"]["bounds"]}


def main() -> None:
    from tests import servers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980, help="tile side in 10 m pixels")
    ap.add_argument("--areas-km", default="5,10,20,40")
    ap.add_argument("--blocks", default="512,1024")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lcp-bench-aoi-"))
    side = args.size * 10.0
    rows = []
    try:
        for block in (int(b) for b in args.blocks.split(",")):
            root = work / f"b{block}"
            total = make_product(root, args.size, block)
            port = servers.free_port()
            stac = servers.start(
                [
                    sys.executable,
                    "-m",
                    "tests.stac_server",
                    "--port",
                    str(port),
                    "--items",
                    str(root / "items.json"),
                    "--files",
                    str(root / "files"),
                ],
                port,
                work / "logs",
                "stac",
                {"PYTHONPATH": str(ROOT)},
            )
            try:
                for km in (float(a) for a in args.areas_km.split(",")):
                    half = km * 500.0
                    cx, cy = X0 + side / 2 + 1234.0, Y1 - side / 2 - 987.0  # off the COG tiles' edges
                    got = fetch(
                        f"http://127.0.0.1:{port}", root / f"home-{km}", (cx - half, cy - half, cx + half, cy + half)
                    )
                    left, bottom, right, top = got["window"]
                    share = (right - left) * (top - bottom) / side**2
                    rows.append((block, km, share, got["fetched"], total))
            finally:
                stac.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ntile {args.size} px, product {rows[0][4] / 1e6:.0f} MB (512-px tiles)")
    print(f"{'COG tiles':>9} {'area km':>8} {'window share':>13} {'fetched MB':>11} {'of product':>11} {'/ share':>8}")
    for block, km, share, fetched, total in rows:
        print(
            f"{block:>9} {km:>8g} {share:>13.4f} {fetched / 1e6:>11.2f} {fetched / total:>11.4f} "
            f"{fetched / (share * total):>8.2f}"
        )


if __name__ == "__main__":
    main()
