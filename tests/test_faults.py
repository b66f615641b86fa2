"""The fault policy (landcoverpy/faults.py): which failures are retried, for how long, and what
the user is told when a service stays away. Failures are real exceptions from the libraries
(a refused connection to a closed loopback port, botocore's and pymongo's own classes)."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import botocore.exceptions as bexc
import pymongo.errors as perr
import pytest
import rasterio.errors
import requests

from landcoverpy.errors import (
    AuthenticationError,
    InputValidationError,
    ProviderError,
    ProviderUnavailableError,
    RasterError,
    TransientError,
)
from landcoverpy.faults import OutageError, Service, call_source, is_transient, ride_out
from tests import servers


def refused_connection() -> requests.ConnectionError:
    try:
        requests.get(f"http://127.0.0.1:{servers.free_port()}/", timeout=5)
    except requests.ConnectionError as exc:
        return exc
    raise AssertionError("a closed port answered")


def client_error(status: int, code: str) -> bexc.ClientError:
    return bexc.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


TRANSIENT = {
    "refused connection (requests)": refused_connection,
    "read timeout (requests)": lambda: requests.ReadTimeout("Read timed out."),
    "reset by peer": lambda: ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    "provider's HTTP 503": lambda: TransientError("x.tif: HTTP 503"),
    "provider unreachable": lambda: ProviderUnavailableError("STAC API is unreachable"),
    "mongo AutoReconnect": lambda: perr.AutoReconnect("connection closed"),
    "mongo NotPrimaryError": lambda: perr.NotPrimaryError("not primary"),
    "mongo NetworkTimeout": lambda: perr.NetworkTimeout("timed out"),
    "S3 503 SlowDown": lambda: client_error(503, "SlowDown"),
    "S3 500 InternalError": lambda: client_error(500, "InternalError"),
    "S3 429": lambda: client_error(429, "TooManyRequests"),
    "botocore endpoint down": lambda: bexc.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
}
FINAL = {
    "full disk": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "permission": lambda: PermissionError(errno.EACCES, "Permission denied"),
    "missing file": lambda: FileNotFoundError(errno.ENOENT, "No such file"),
    "S3 NoSuchKey": lambda: client_error(404, "NoSuchKey"),
    "S3 access denied": lambda: client_error(403, "AccessDenied"),
    "S3 quota (507)": lambda: client_error(507, "XMinioStorageFull"),
    "S3 quota (QuotaExceeded)": lambda: client_error(403, "QuotaExceeded"),
    "bad credentials": lambda: AuthenticationError("check SENTINEL_USERNAME"),
    "bad input": lambda: InputValidationError("dataset.csv row 3: latitude 95"),
    "provider refusal": lambda: ProviderError("B05: resolution 10 m, expected 20 m"),
    "mongo duplicate key": lambda: perr.DuplicateKeyError("E11000"),
    "an already ridden-out outage": lambda: OutageError("S3 unreachable for 120 s"),
}


@pytest.mark.parametrize("name", sorted(TRANSIENT))
def test_transient_failures_are_retried(name: str) -> None:
    assert is_transient(TRANSIENT[name]())


@pytest.mark.parametrize("name", sorted(FINAL))
def test_final_failures_are_not(name: str) -> None:
    assert not is_transient(FINAL[name]())


def test_gdal_read_failures_are_transient_only_for_remote_rasters() -> None:
    failed = rasterio.errors.RasterioIOError("Read failed. See previous exception for details.")
    missing = rasterio.errors.RasterioIOError("/vsis3/b/k.tif: No such file or directory; HTTP response code: 404")
    assert is_transient(failed, remote_rasters=True)
    assert not is_transient(failed)  # a local file that cannot be read is damaged: retrying cannot help
    assert not is_transient(missing, remote_rasters=True)


SERVICE = Service("S3 object store at 127.0.0.1:9", "MINIO_HOST / MINIO_PORT")


def flaky(failures: int, exc: BaseException) -> tuple[list[float], object]:
    calls: list[float] = []

    def fn() -> str:
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise exc
        return "done"

    return calls, fn


def test_transient_failures_are_ridden_out() -> None:
    calls, fn = flaky(3, ConnectionResetError(errno.ECONNRESET, "reset"))
    assert ride_out(fn, service=SERVICE, what="put", tolerance=30) == "done"  # type: ignore[arg-type]
    assert len(calls) == 4
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert gaps[0] >= 0.5 and gaps[2] >= 2.0  # exponential backoff from 0.5 s, not a hot loop


def test_final_failures_are_raised_at_once() -> None:
    calls, fn = flaky(5, FileNotFoundError(errno.ENOENT, "gone"))
    with pytest.raises(FileNotFoundError):
        ride_out(fn, service=SERVICE, what="get", tolerance=30)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_an_outage_past_the_tolerance_names_the_service_and_settings() -> None:
    calls, fn = flaky(10**6, ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    started = time.monotonic()
    with pytest.raises(OutageError) as info:
        ride_out(fn, service=SERVICE, what="put b/k", tolerance=3)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "S3 object store at 127.0.0.1:9 unreachable" in message and "MINIO_HOST / MINIO_PORT" in message
    assert "OUTAGE_TOLERANCE (now 3 s)" in message and "put b/k" in message
    assert elapsed >= 3 and len(calls) >= 3  # retried for the whole tolerance
    assert "\n" not in message


class DummySource:
    settings_hint = "MODIS_SOURCE"

    def describe(self) -> str:
        return "MODIS source http://127.0.0.1:9"


def test_a_provider_outage_names_the_provider_and_its_setting() -> None:
    with pytest.raises(OutageError) as info:
        call_source(DummySource(), "MODIS search h18v04", refused_connection_raiser, tolerance=1)
    assert "MODIS source http://127.0.0.1:9 unreachable" in str(info.value)
    assert "Check MODIS_SOURCE" in str(info.value)


def refused_connection_raiser() -> None:
    raise refused_connection()


def test_map_reads_ride_out_the_store_but_not_a_damaged_local_file(tmp_path: Path) -> None:
    """What the map products (vectorize, stats, change) read in place goes through the store's
    policy: on S3 a remote read that failed for the network is retried, on a local disk it is a
    damaged file, raised at once."""
    from landcoverpy.storage import LocalStore, S3Store

    network = rasterio.errors.RasterioIOError("CURL error: Failed to connect to 127.0.0.1 port 9: Connection refused")
    calls, fn = flaky(2, network)
    store = S3Store(host="127.0.0.1", port=servers.free_port(), access_key="a", secret_key="b", tolerance=30)
    assert store.reading(fn, "reading a map") == "done" and len(calls) == 3  # type: ignore[arg-type]
    calls, fn = flaky(2, network)
    with pytest.raises(RasterError, match="reading a map: CURL error"):  # ours: one line, no traceback
        LocalStore(tmp_path).reading(fn, "reading a map")  # type: ignore[arg-type]
    assert len(calls) == 1
