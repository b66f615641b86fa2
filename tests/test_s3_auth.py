"""Sharing on an S3 server that checks every request: Ceph's radosgw (tests/servers.py:
``ceph_rgw``), which verifies SigV4 signatures in headers and in presigned query strings and
applies bucket policies, as MinIO and AWS do (moto_server cannot: with authentication on it
answers every presigned or anonymous request with an error, valid or not).

- an unsigned request, a URL signed with a wrong key and a tampered link are refused;
- the presigned link of ``share`` downloads the map, with no credentials;
- the maps open anonymously only with MINIO_PUBLIC_MAPS, only the maps bucket, and no longer
  once the setting is turned off again;
- GDAL reads the maps in place with the store's keys (signed requests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests
from pydantic import SecretStr

from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import AuthenticationError
from landcoverpy.raster.cog import write_cog
from landcoverpy.raster.grid import Grid
from landcoverpy.records import MapOutput, MapRecord
from landcoverpy.sharing import download_link, parse_duration, share_lines
from landcoverpy.storage import open_store
from tests import servers
from tests.conftest import _bucket_fields, make_settings


@pytest.fixture(scope="module")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    missing = servers.ceph_missing()
    if missing:
        pytest.skip(
            f"Ceph's S3 gateway is not installed (missing {', '.join(missing)}); "
            "`make system-tools` installs Debian's radosgw, ceph-mon and ceph-osd"
        )
    with servers.ceph_rgw(tmp_path_factory.mktemp("ceph")) as server:
        yield server


def rgw_settings(tmp_path: Path, rgw: servers.Server, uid: str, **overrides: object) -> Settings:
    buckets = {name: f"{value}-{uid}" for name, value in _bucket_fields().items()}
    values: dict[str, object] = {
        **buckets,
        "MINIO_HOST": "127.0.0.1",
        "MINIO_PORT": rgw.port,
        "MINIO_ACCESS_KEY": rgw.extra["access_key"],
        "MINIO_SECRET_KEY": rgw.extra["secret_key"],
    }
    return make_settings(tmp_path, **(values | overrides))


def stored_map(rgw: servers.Server, tmp_path: Path) -> tuple[Settings, Context, str, str, bytes]:
    """Settings and buckets of one test, and a COG map in its maps bucket: (settings, context,
    bucket, key, the map's bytes)."""
    settings = rgw_settings(tmp_path, rgw, uuid.uuid4().hex[:8])
    ctx = Context.open(settings)
    ctx.ensure_buckets()
    grid = Grid("EPSG:32630", (10.0, 0.0, 300000.0, 0.0, -10.0, 4100000.0), 300, 300)
    values = (np.arange(300 * 300).reshape(300, 300) % 4 + 1).astype("uint8")
    write_cog(tmp_path / "map.tif", values, grid, nodata=0)
    bucket, key = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS, "30SUF/map-x/classification.tif"
    ctx.store.put_file(bucket, key, tmp_path / "map.tif")
    return settings, ctx, bucket, key, (tmp_path / "map.tif").read_bytes()


def test_only_signed_requests_and_presigned_links_get_the_map(rgw: servers.Server, tmp_path: Path) -> None:
    settings, ctx, bucket, key, data = stored_map(rgw, tmp_path)
    plain = f"http://127.0.0.1:{rgw.port}/{bucket}/{key}"

    unsigned = requests.get(plain, timeout=30)
    assert unsigned.status_code == 403 and b"AccessDenied" in unsigned.content

    wrong = settings.model_copy(update={"MINIO_SECRET_KEY": SecretStr("not-the-secret")})
    forged = requests.get(download_link(wrong, ctx.store, bucket, key, parse_duration("1h")), timeout=30)
    assert forged.status_code == 403 and b"SignatureDoesNotMatch" in forged.content

    link = download_link(settings, ctx.store, bucket, key, parse_duration("1h"))
    other = link.replace("classification.tif", "sl_classification.tif")  # the signature is for one object
    assert requests.get(other, timeout=30).status_code == 403

    got = requests.get(link, timeout=30)  # no credentials: the signature in the link is the key
    assert got.status_code == 200 and got.content == data

    record = MapRecord(
        _id="map-x", tile="30SUF", kind="classification", outputs={"classification": MapOutput(bucket=bucket, key=key)}
    )
    lines = share_lines(settings, ctx.store, [record], parse_duration("2h"))
    line = next(text for text in lines if "classification:" in text)
    shared = requests.get(line.split(": ", 1)[1], timeout=30)
    assert shared.status_code == 200 and shared.content == data

    # GDAL signs its own requests with the store's keys: the map reads in place
    with ctx.store.rasterio_env(), rasterio.open(ctx.store.raster_uri(bucket, key)) as src:
        assert src.read(1)[0, :4].tolist() == [1, 2, 3, 4]

    # header-signed requests with a wrong key: our error, naming the settings
    with pytest.raises(AuthenticationError, match="MINIO_ACCESS_KEY"):
        open_store(wrong)


def test_maps_are_public_only_with_minio_public_maps(rgw: servers.Server, tmp_path: Path) -> None:
    private, ctx, bucket, key, data = stored_map(rgw, tmp_path)
    models = private.MINIO_BUCKET_MODELS
    ctx.store.put_bytes(models, "hierarchy-x/metrics.json", b"{}")

    def anonymous(bucket: str, key: str) -> int:
        return requests.get(f"http://127.0.0.1:{rgw.port}/{bucket}/{key}", timeout=30).status_code

    assert anonymous(bucket, key) == 403  # the default: private

    Context.open(private.model_copy(update={"MINIO_PUBLIC_MAPS": True})).ensure_buckets()
    opened = requests.get(f"http://127.0.0.1:{rgw.port}/{bucket}/{key}", timeout=30)
    assert opened.status_code == 200 and opened.content == data
    assert anonymous(models, "hierarchy-x/metrics.json") == 403  # only the maps bucket is public

    Context.open(private).ensure_buckets()  # the setting turned off again
    assert anonymous(bucket, key) == 403

    # a policy the administrator wrote is not ours to remove
    s3 = ctx.store.client  # type: ignore[attr-defined]
    custom = (
        '{"Version": "2012-10-17", "Statement": [{"Sid": "team", "Effect": "Allow", "Principal": "*", '
        f'"Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::{bucket}/30SUF/*"]}}]}}'
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=custom)
    Context.open(private).ensure_buckets()
    assert anonymous(bucket, key) == 200
