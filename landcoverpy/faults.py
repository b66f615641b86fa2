"""The fault policy of every call to a remote service (S3, MongoDB, GDAL's remote reads, the
data providers' searches and downloads, Dask tasks that read or write remote objects).

A failure is *transient* when it may pass on its own: a connection reset, refused or timed out,
an HTTP 429 or 5xx answer, pymongo's ``AutoReconnect`` family (``NotPrimaryError``,
``NetworkTimeout``, server selection timeouts), GDAL's failed read of a remote file. Those are
retried with bounded exponential backoff and jitter (tenacity) for up to ``OUTAGE_TOLERANCE``
seconds; then :class:`OutageError` names the service and the settings to check, and the command
exits with status 3. Anything else (bad credentials, a missing object, bad input, a full disk)
fails at once: retrying cannot fix it.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import botocore.exceptions as bexc
import pymongo.errors as perr
import rasterio.errors
import urllib3.exceptions
from rasterio._err import CPLE_BaseError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential, wait_random

from landcoverpy.errors import LandcoverError, ServiceUnavailableError, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TOLERANCE = 120.0
FIRST_DELAY = 0.5  # seconds before the first retry; doubles up to MAX_DELAY, with jitter
MAX_DELAY = 8.0

# errno values of a network that may come back; any other OSError (ENOSPC, EACCES...) is final
NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EAGAIN,
    }
)
# a full bucket or disk, a quota, an object too large: final (MinIO answers 507 for a full disk)
QUOTA_CODES = frozenset(
    {"QuotaExceeded", "XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "EntityTooLarge", "InsufficientStorage"}
)
S3_RETRY_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling", "RequestTimeTooSkewed"}
)
# what GDAL says when a remote read fails for the network's sake (not for a missing object)
GDAL_NETWORK_HINTS = ("read failed", "curl", "timed out", "connection", "http response code: 5", "429", "couldn't")
GDAL_FINAL_HINTS = ("404", "403", "does not exist", "not recognized as", "access denied")


class OutageError(ServiceUnavailableError):
    """A service stayed unreachable for longer than OUTAGE_TOLERANCE (exit status 3)."""


@dataclass(frozen=True)
class Service:
    """Who is called, and which settings a user checks when it stays away."""

    name: str  # "S3 object store at 127.0.0.1:9000"
    settings: str  # "MINIO_HOST / MINIO_PORT"


@runtime_checkable
class Source(Protocol):
    """A data provider or source (Sentinel-2, DEM, MODIS): what it is, for messages."""

    def describe(self) -> str: ...


def source_service(source: object) -> Service:
    """The service a provider or source stands for, with the settings that point at it
    (its ``settings_hint``)."""
    name = source.describe() if isinstance(source, Source) else type(source).__name__
    return Service(name, str(getattr(source, "settings_hint", "the provider settings")))


def call_source(source: object, what: str, fn: Callable[[], T], tolerance: float, remote_rasters: bool = False) -> T:
    """A search, listing or download of a data provider under the fault policy: its transient
    failures (dropped connections, timeouts, HTTP 429/5xx) are retried for up to ``tolerance``
    seconds, then :class:`OutageError` names the provider and its settings."""
    return ride_out(fn, service=source_service(source), what=what, tolerance=tolerance, remote_rasters=remote_rasters)


def is_transient_status(status: int | None) -> bool:
    """HTTP answers worth retrying: too many requests, and server-side errors."""
    return status is not None and (status == 429 or 500 <= status < 600)


def is_transient(exc: BaseException, remote_rasters: bool = False) -> bool:
    """Whether ``exc`` may pass if the call is tried again. GDAL's read errors count only with
    ``remote_rasters`` (the rasters are read over the network): on a local disk they mean a
    damaged file."""
    if isinstance(exc, ServiceUnavailableError) and not isinstance(exc, TransientError):
        return False  # already ridden out (or a configuration that cannot be reached at all)
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, LandcoverError):
        return False
    if isinstance(exc, perr.ConnectionFailure):  # AutoReconnect, NotPrimaryError, NetworkTimeout...
        return True
    if isinstance(exc, perr.OperationFailure):
        return bool(exc.has_error_label("RetryableWriteError") or exc.code in (91, 189, 11600, 11602, 10107, 13435))
    if isinstance(exc, bexc.ClientError):
        err = exc.response.get("Error", {})
        if err.get("Code", "") in QUOTA_CODES:
            return False
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return status == 429 or status >= 500 or err.get("Code", "") in S3_RETRY_CODES
    if isinstance(
        exc,
        (
            bexc.EndpointConnectionError,
            bexc.ConnectTimeoutError,
            bexc.ReadTimeoutError,
            bexc.ConnectionClosedError,
            bexc.HTTPClientError,  # urllib3's protocol errors under botocore
            bexc.ResponseStreamingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.TimeoutError,
            urllib3.exceptions.NewConnectionError,
            urllib3.exceptions.MaxRetryError,  # the minio client's own retries gave up
        ),
    ):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, rasterio.errors.RasterioError):  # ENOSPC is final
        return exc.errno in NETWORK_ERRNOS or (exc.errno is None and _network_message(str(exc)))
    if remote_rasters and isinstance(exc, (rasterio.errors.RasterioError, CPLE_BaseError)):
        text = str(exc).lower()
        return not any(h in text for h in GDAL_FINAL_HINTS) and any(h in text for h in GDAL_NETWORK_HINTS)
    return False


def _network_message(text: str) -> bool:
    text = text.lower()
    return any(h in text for h in ("connection", "timed out", "reset by peer", "broken pipe"))


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def ride_out(
    fn: Callable[[], T],
    *,
    service: Service,
    what: str,
    tolerance: float,
    remote_rasters: bool = False,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Call ``fn``; retry its transient failures with backoff for up to ``tolerance`` seconds,
    then raise :class:`OutageError`. Other failures are raised as they are, at once."""
    started = time.monotonic()

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        level = logging.WARNING if state.attempt_number == 1 else logging.DEBUG
        log.log(
            level,
            "%s: %s (%s); retrying for up to %.0f s (OUTAGE_TOLERANCE)",
            service.name,
            what,
            describe(exc) if exc else "?",
            tolerance,
        )
        if on_retry is not None:
            on_retry()

    retrying = Retrying(
        stop=stop_after_delay(max(tolerance, 0.0)),
        wait=wait_exponential(multiplier=FIRST_DELAY, max=MAX_DELAY) + wait_random(0, FIRST_DELAY),
        retry=retry_if_exception(lambda e: is_transient(e, remote_rasters)),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        result = retrying(fn)
    except Exception as exc:
        if not is_transient(exc, remote_rasters):
            raise
        raise outage(service, what, exc, time.monotonic() - started, tolerance) from None
    attempts = retrying.statistics.get("attempt_number", 1)
    if attempts > 1:
        log.info("%s answers again (%s, after %.0f s)", service.name, what, time.monotonic() - started)
    return result


def outage(service: Service, what: str, exc: BaseException, elapsed: float, tolerance: float) -> OutageError:
    return OutageError(
        f"{service.name} unreachable for {elapsed:.0f} s ({what}: {describe(exc)}). "
        f"Check {service.settings} and that the server is running; a longer outage can be ridden out "
        f"with OUTAGE_TOLERANCE (now {tolerance:.0f} s). Rerun to resume: finished work is kept."
    )
