"""Sharing maps: presigned download links, MinIO console paths, an opt-in public-read policy.

The MinIO-specific parts use the ``minio`` client library (presigned URLs, bucket policies);
on the embedded local store, a map's link is its file URI.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from minio import Minio
from minio.error import S3Error

from landcoverpy.config import Settings
from landcoverpy.errors import ConfigurationError
from landcoverpy.records import MapRecord

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_EXPIRY = dt.timedelta(days=7)  # S3 signature version 4 allows at most 7 days


def parse_duration(text: str) -> dt.timedelta:
    """``7d``, ``12h``, ``30m``, ``3600`` (seconds) -> timedelta (at most 7 days, SigV4's limit)."""
    m = _DURATION.match(text)
    if not m:
        raise ConfigurationError(f"--expires {text!r}: give a duration like 7d, 12h, 30m or seconds")
    delta = dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    if not dt.timedelta(seconds=1) <= delta <= MAX_EXPIRY:
        raise ConfigurationError(f"--expires {text!r}: presigned links last from 1 s to 7 days")
    return delta


def _client(settings: Settings) -> Any:

    return Minio(
        f"{settings.MINIO_HOST}:{settings.MINIO_PORT}",
        access_key=settings.MINIO_ACCESS_KEY,
        secret_key=settings.MINIO_SECRET_KEY.get_secret_value(),
        secure=settings.MINIO_SECURE,
        region=settings.MINIO_REGION,
    )


def download_link(settings: Settings, store: Any, bucket: str, key: str, expires: dt.timedelta) -> str:
    """A link that downloads the object: presigned on S3/MinIO, the file URI on the local store."""
    if not settings.uses_s3:
        return Path(store.raster_uri(bucket, key)).as_uri()
    return str(_client(settings).presigned_get_object(bucket, key, expires=expires))


def console_link(settings: Settings, bucket: str, prefix: str) -> str | None:
    """The MinIO console page of a folder (``MINIO_CONSOLE_URL`` set), else None. The console
    addresses folders as base64 of the prefix."""
    if not settings.MINIO_CONSOLE_URL:
        return None
    encoded = base64.b64encode(prefix.encode("utf-8")).decode()
    return f"{settings.MINIO_CONSOLE_URL.rstrip('/')}/browser/{quote(bucket)}/{quote(encoded)}"


def public_read_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }


def make_public(settings: Settings, bucket: str) -> None:
    """Anonymous read of the maps bucket (opt-in: MINIO_PUBLIC_MAPS): maps and reports open in
    a browser without credentials. Nothing else becomes public."""
    if settings.uses_s3:
        _client(settings).set_bucket_policy(bucket, json.dumps(public_read_policy(bucket)))


def withdraw_public(settings: Settings, bucket: str) -> bool:
    """MINIO_PUBLIC_MAPS turned off: remove the public-read policy ``make_public`` set, so
    anonymous reads are refused again. A policy someone else wrote is left alone. True when a
    policy was removed."""
    if not settings.uses_s3:
        return False
    client = _client(settings)
    try:
        current = json.loads(client.get_bucket_policy(bucket))
    except S3Error as exc:  # no policy, or a server without bucket policies: nothing to withdraw
        log.debug("bucket %s: no policy to withdraw (%s)", bucket, exc.code)
        return False
    if _normalised(current) != _normalised(public_read_policy(bucket)):
        return False
    client.delete_bucket_policy(bucket)
    return True


def _normalised(policy: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """A policy's statements in a comparable form (servers rewrite the JSON they return:
    "*" for {"AWS": ["*"]}, a string for a one-item list)."""

    def items(value: Any) -> tuple[str, ...]:
        if isinstance(value, dict):
            value = [v for vs in value.values() for v in (vs if isinstance(vs, list) else [vs])]
        return tuple(sorted(value if isinstance(value, list) else [value]))

    return sorted(
        (
            str(st.get("Effect")),
            str(st.get("Sid", "")),
            items(st.get("Principal", [])),
            items(st.get("Action", [])),
            items(st.get("Resource", [])),
        )
        for st in policy.get("Statement", [])
    )


def share_lines(settings: Settings, store: Any, records: list[MapRecord], expires: dt.timedelta) -> list[str]:
    """For each map: its outputs' download links and the console folder, as lines to print."""
    lines = []
    for rec in records:
        if not rec.outputs:
            continue
        first = next(iter(rec.outputs.values()))
        bucket, folder = first.bucket, first.key.rsplit("/", 1)[0] + "/"
        lines.append(f"{rec.tile} map {rec.id} ({bucket}/{folder})")
        console = console_link(settings, bucket, folder)
        if console:
            lines.append(f"  console: {console}")
        for name, loc in rec.outputs.items():
            lines.append(f"  {name}: {download_link(settings, store, loc.bucket, loc.key, expires)}")
    if settings.uses_s3 and records:
        lines.append(f"(download links expire in {expires})")
    return lines
