"""Sharing against a real S3 server (moto_server): content types on every kind of upload, a
presigned link that downloads the map over plain HTTP, the opt-in public-read policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests

from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import ConfigurationError
from landcoverpy.raster.cog import write_cog
from landcoverpy.raster.grid import Grid
from landcoverpy.records import MapOutput, MapRecord
from landcoverpy.sharing import console_link, download_link, parse_duration, share_lines
from landcoverpy.storage import COG_MEDIA_TYPE


def test_content_types_and_presigned_download(server_settings: Settings, tmp_path: Path) -> None:
    ctx = Context.open(server_settings.model_copy(update={"MINIO_CONSOLE_URL": "http://localhost:9001"}))
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    grid = Grid("EPSG:32630", (10.0, 0.0, 300000.0, 0.0, -10.0, 4100000.0), 600, 600)
    write_cog(tmp_path / "map.tif", np.ones((600, 600), "uint8"), grid, nodata=0)
    uploads = {
        "30SUF/map-x/classification.tif": (tmp_path / "map.tif").read_bytes(),
        "30SUF/map-x/classification.png": b"\x89PNG\r\n\x1a\n",
        "30SUF/map-x/classification.qml": b"<qgis/>",
        "reports/r.html": b"<html></html>",
        "stac/catalog.json": b"{}",
    }
    for key, data in uploads.items():
        ctx.store.put_bytes(bucket, key, data)
    ctx.store.copy(bucket, "30SUF/map-x/classification.png", "latest/30SUF/classification.png")
    s3 = ctx.store.client  # type: ignore[attr-defined]
    kinds = {
        key: s3.head_object(Bucket=bucket, Key=key)["ContentType"]
        for key in [*uploads, "latest/30SUF/classification.png"]
    }
    assert kinds == {
        "30SUF/map-x/classification.tif": COG_MEDIA_TYPE,
        "30SUF/map-x/classification.png": "image/png",
        "30SUF/map-x/classification.qml": "application/xml",
        "reports/r.html": "text/html; charset=utf-8",
        "stac/catalog.json": "application/json",
        "latest/30SUF/classification.png": "image/png",
    }
    link = download_link(ctx.settings, ctx.store, bucket, "30SUF/map-x/classification.tif", parse_duration("1h"))
    assert "X-Amz-Signature=" in link and "X-Amz-Expires=3600" in link
    resp = requests.get(link, timeout=30)  # plain HTTP, no credentials: the signature is the key
    assert resp.status_code == 200 and resp.content == uploads["30SUF/map-x/classification.tif"]
    record = MapRecord(
        _id="map-x",
        tile="30SUF",
        kind="classification",
        outputs={"classification": MapOutput(bucket=bucket, key="30SUF/map-x/classification.tif")},
    )
    lines = share_lines(ctx.settings, ctx.store, [record], parse_duration("2h"))
    assert lines[0] == f"30SUF map map-x ({bucket}/30SUF/map-x/)"
    assert lines[1].startswith(f"  console: http://localhost:9001/browser/{bucket}/")
    assert "X-Amz-Expires=7200" in lines[2] and lines[-1] == "(download links expire in 2:00:00)"


def test_public_maps_policy_is_opt_in(server_settings: Settings) -> None:
    ctx = Context.open(server_settings)
    ctx.ensure_buckets()
    s3 = ctx.store.client  # type: ignore[attr-defined]
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    with pytest.raises(Exception, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=bucket)
    Context.open(server_settings.model_copy(update={"MINIO_PUBLIC_MAPS": True})).ensure_buckets()
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Action"] == ["s3:GetObject"]
    assert policy["Statement"][0]["Resource"] == [f"arn:aws:s3:::{bucket}/*"]
    for other in (ctx.settings.MINIO_BUCKET_MODELS, ctx.settings.MINIO_BUCKET_NAME_PRODUCTS):
        with pytest.raises(Exception, match="NoSuchBucketPolicy"):
            s3.get_bucket_policy(Bucket=other)


def test_durations_and_console_paths(local_settings: Settings) -> None:
    assert parse_duration("7d").days == 7 and parse_duration("90").seconds == 90
    for bad in ("8d", "0", "soon"):
        with pytest.raises(ConfigurationError, match="--expires"):
            parse_duration(bad)
    assert console_link(local_settings, "b", "x/") is None  # no console configured
