"""Benchmark: acquisition streams. Peak memory of acquiring one product over HTTP (a STAC API
process) into S3 (moto_server) for a small and a full-size product: it must not grow with the
band size.

    python benchmarks/acquire_streaming.py [--small 3660] [--large 10980]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_product(root: str, size: int) -> dict:
    """Band files of an L2A product at every band's native resolution (uncompressed, so file
    size follows pixel count) and Earth Search-shaped STAC items pointing at them."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from landcoverpy.sentinel2 import BAND_RESOLUTION, L2A_BANDS
    from landcoverpy.sources.stac_profiles import COMMON_NAMES

    keys = {key: band for key, band in COMMON_NAMES.items() if band in L2A_BANDS}

    files = Path(root) / "files"
    files.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    assets = {}
    for key, band in keys.items():
        res = BAND_RESOLUTION[band]
        n = size * 10 // res
        dtype = "uint8" if band == "SCL" else "uint16"
        path = files / f"{band}.tif"
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=n,
            height=n,
            count=1,
            dtype=dtype,
            crs="EPSG:32630",
            transform=Affine(res, 0, 399960, 0, -res, 4200000),
            tiled=True,
        ) as dst:
            for row in range(0, n, 1024):
                h = min(1024, n - row)
                dst.write(rng.integers(1, 4000, size=(h, n)).astype(dtype), 1, window=Window(0, row, n, h))
        assets[key] = {"href": "{BASE}/files/" + path.name, "file:size": path.stat().st_size}
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "collection": "sentinel-2-l2a",
        "id": f"bench-{size}",
        "geometry": None,
        "bbox": None,
        "links": [],
        "assets": assets,
        "properties": {
            "datetime": "2021-04-01T11:00:00Z",
            "eo:cloud_cover": 1.0,
            "grid:code": "MGRS-30SUF",
            "s2:processing_baseline": "04.00",
            "s2:product_uri": f"S2B_MSIL2A_20210401T110000_N0400_R008_T30SUF_{size}",
        },
    }
    (Path(root) / "items.json").write_text(json.dumps([item]))
    total = sum((files / f"{b}.tif").stat().st_size for b in keys.values())
    return {"bytes": total}


def fetch(stac_url: str, s3_port: int, home: str) -> dict:
    import datetime as dt

    from landcoverpy.config import Settings
    from landcoverpy.pipeline.acquire import fetch_product
    from landcoverpy.sources.stac import STACProvider

    settings = Settings(
        _env_file=None,
        LANDCOVERPY_HOME=Path(home),
        MINIO_HOST="127.0.0.1",
        MINIO_PORT=s3_port,
        MINIO_ACCESS_KEY="bench",
        MINIO_SECRET_KEY="bench",
    )
    provider = STACProvider(url=stac_url)
    cand = provider.search("30SUF", dt.date(2021, 3, 1), dt.date(2021, 5, 1))[0]
    rec = fetch_product(settings, provider, cand)
    return {"bands": len(rec["bands"]), "bytes": sum(b["size"] for b in rec["bands"].values())}


def main() -> None:
    from _common import measure

    from tests import servers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=3660)
    ap.add_argument("--large", type=int, default=10980)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lcp-bench-acq-"))
    rows = {}
    try:
        with servers.moto_server(work / "logs") as s3:
            for label, size in (("small", args.small), ("full-size", args.large)):
                root = work / label
                made = measure("acquire_streaming", "make_product", {"root": str(root), "size": size})["result"]
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
                    r = measure(
                        "acquire_streaming",
                        "fetch",
                        {"stac_url": f"http://127.0.0.1:{port}", "s3_port": s3.port, "home": str(root / "home")},
                    )
                finally:
                    stac.stop()
                assert r["result"]["bytes"] == made["bytes"]
                rows[label] = {"mib": made["bytes"] / 2**20, **r}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'product':<12}{'size MiB':>10}{'seconds':>10}{'peak RSS MiB':>15}{'MB/s':>8}")
    for label, r in rows.items():
        print(
            f"{label:<12}{r['mib']:>10.0f}{r['seconds']:>10.1f}{r['peak_rss_mib']:>15.0f}"
            f"{r['mib'] / r['seconds']:>8.0f}"
        )
    small, large = rows["small"], rows["full-size"]
    print(
        f"product {large['mib'] / small['mib']:.1f}x larger -> "
        f"peak RSS {large['peak_rss_mib'] / small['peak_rss_mib']:.2f}x"
    )


if __name__ == "__main__":
    main()
