"""Object storage: one interface, two backends (S3-compatible and a local directory).

Objects are written atomically (temporary object/file, then move) so a crash never leaves a
half-written object under its final key. Rasters are read in place: :meth:`ObjectStore.raster_uri`
gives a path rasterio can open inside :meth:`ObjectStore.rasterio_env`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import boto3
import rasterio
import rasterio.errors
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from rasterio._err import CPLE_BaseError
from rasterio.env import get_gdal_config, set_gdal_config
from rasterio.session import AWSSession

from landcoverpy.config import Settings
from landcoverpy.errors import (
    AuthenticationError,
    InvalidKeyError,
    NoSpaceError,
    RasterError,
    ServiceUnavailableError,
    StorageError,
)
from landcoverpy.faults import DEFAULT_TOLERANCE, QUOTA_CODES, Service, is_transient, ride_out

log = logging.getLogger(__name__)

T = TypeVar("T")

_SAFE_PART = re.compile(r"[^A-Za-z0-9._=+-]+")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CHUNK_SIZE = 8 * 1024 * 1024


COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_MEDIA_TYPES = {
    ".tif": COG_MEDIA_TYPE,
    ".tiff": COG_MEDIA_TYPE,
    ".png": "image/png",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".html": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".qml": "application/xml",
    ".gpkg": "application/geopackage+sqlite3",
    ".fgb": "application/vnd.flatgeobuf",
    ".xml": "application/xml",
    ".jp2": "image/jp2",
    ".hdf": "application/x-hdf",
    ".pt": "application/octet-stream",
    ".joblib": "application/octet-stream",
    ".npz": "application/octet-stream",
}


def media_type(key: str) -> str:
    """The content type an object gets from its key's extension (browsers then show quicklooks
    and reports instead of downloading them)."""
    name = key.rsplit("/", 1)[-1].lower()
    for ext, kind in _MEDIA_TYPES.items():
        if name.endswith(ext):
            return kind
    return "application/octet-stream"


def safe_key_part(value: str) -> str:
    """Turn user data (tile id, class or season name) into one safe key segment.

    Separators and anything outside ``[A-Za-z0-9._=+-]`` become ``_``; ``.``/``..`` and empty
    results are rejected.
    """
    cleaned = _SAFE_PART.sub("_", str(value).strip())
    cleaned = re.sub(r"_+", "_", re.sub(r"\.{2,}", "_", cleaned)).strip("._")
    if not cleaned:
        raise InvalidKeyError(f"{value!r} cannot be used in an object key: give a non-empty name")
    return cleaned


def join_key(*parts: str) -> str:
    """Join already-safe segments (each may contain ``/``) into a key, refusing traversal."""
    segments: list[str] = []
    for part in parts:
        for seg in str(part).split("/"):
            if seg == "":
                continue
            if seg in {".", ".."}:
                raise InvalidKeyError(f"object key {'/'.join(parts)!r} contains {seg!r}")
            segments.append(seg)
    if not segments:
        raise InvalidKeyError("empty object key")
    return "/".join(segments)


def check_key(key: str) -> str:
    """Validate a full key: relative, no ``..``, no empty segments, no backslashes."""
    if not key or key.startswith("/") or "\\" in key:
        raise InvalidKeyError(f"object key {key!r} must be relative and use '/' separators")
    if any(seg in {"", ".", ".."} for seg in key.split("/")):
        raise InvalidKeyError(f"object key {key!r} contains an empty, '.' or '..' segment")
    return key


def check_bucket(bucket: str) -> str:
    if not _BUCKET_RE.match(bucket):
        raise InvalidKeyError(f"bucket name {bucket!r} is invalid: use 3-63 lowercase letters, digits, '.' or '-'")
    return bucket


class ObjectStore(ABC):
    """Buckets of objects addressed by ``(bucket, key)``."""

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def check(self) -> None:
        """Raise ServiceUnavailableError / AuthenticationError if the store cannot be used."""

    @abstractmethod
    def ensure_bucket(self, bucket: str) -> None: ...

    @abstractmethod
    def list_buckets(self) -> list[str]: ...

    @abstractmethod
    def put_file(self, bucket: str, key: str, path: str | Path) -> None: ...

    @abstractmethod
    def put_stream(self, bucket: str, key: str, stream: IO[bytes]) -> None: ...

    @abstractmethod
    def get_file(self, bucket: str, key: str, path: str | Path) -> Path: ...

    @abstractmethod
    @contextlib.contextmanager
    def open(self, bucket: str, key: str) -> Iterator[IO[bytes]]: ...

    @abstractmethod
    def exists(self, bucket: str, key: str) -> bool: ...

    @abstractmethod
    def size(self, bucket: str, key: str) -> int: ...

    @abstractmethod
    def stat(self, bucket: str, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""

    @abstractmethod
    def list_sizes(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix`` with its size in bytes."""

    @abstractmethod
    def list(self, bucket: str, prefix: str = "") -> list[str]: ...

    @abstractmethod
    def delete(self, bucket: str, key: str) -> None: ...

    @abstractmethod
    def copy(self, bucket: str, src_key: str, dst_key: str) -> None:
        """Copy an object inside a bucket; the destination appears complete or not at all."""

    @abstractmethod
    def raster_uri(self, bucket: str, key: str) -> str:
        """A path rasterio opens in place (inside :meth:`rasterio_env`)."""

    @abstractmethod
    def rasterio_env(self, **gdal_options: Any) -> contextlib.AbstractContextManager[Any]:
        """A rasterio.Env for reading this store's rasters, with extra GDAL options."""

    # Helpers shared by every backend
    def calling(self, fn: Callable[[], T], what: str) -> T:
        """``fn``, a call to this store's server by another client (the minio library's bucket
        policies), under the store's fault policy: on S3 its transient failures are retried for
        OUTAGE_TOLERANCE. A local store has no server: ``fn`` runs once."""
        return fn()

    def reading(self, fn: Callable[[], T], what: str) -> T:
        """``fn``, which reads this store's rasters in place (GDAL), under the store's fault
        policy: on S3 a failed remote read is retried for OUTAGE_TOLERANCE; a read that fails
        for good (a local disk's damaged or missing file) is a RasterError naming ``what``."""
        try:
            return fn()
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            raise RasterError(f"{what}: {exc}") from None

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:

        self.put_stream(bucket, key, io.BytesIO(data))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with self.open(bucket, key) as fh:
            return fh.read()

    def put_json(self, bucket: str, key: str, obj: Any) -> None:
        self.put_bytes(bucket, key, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def get_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.get_bytes(bucket, key))

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        keys = self.list(bucket, prefix)
        for key in keys:
            self.delete(bucket, key)
        return len(keys)


class LocalStore(ObjectStore):
    """Buckets are directories below ``root``; keys are relative paths."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def describe(self) -> str:
        return f"local directory {self.root}"

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"Local store {self.root} is not writable ({exc.strerror}). "
                "Set LANDCOVERPY_HOME to a writable directory."
            ) from None

    def _path(self, bucket: str, key: str) -> Path:
        check_bucket(bucket)
        check_key(key)
        path = (self.root / bucket / key).resolve()
        if self.root / bucket not in path.parents:
            raise InvalidKeyError(f"object key {key!r} escapes bucket {bucket!r}")
        return path

    def ensure_bucket(self, bucket: str) -> None:
        check_bucket(bucket)
        try:
            (self.root / bucket).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Cannot create bucket directory {self.root / bucket}: {exc.strerror}. "
                "Set LANDCOVERPY_HOME to a writable directory."
            ) from None

    def list_buckets(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    @contextlib.contextmanager
    def _atomic_target(self, bucket: str, key: str) -> Iterator[Path]:
        final = self._path(bucket, key)
        self.ensure_bucket(bucket)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.part"
        try:
            yield tmp
            os.replace(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise no_space(self.root, f"writing {bucket}/{key}", tmp) from None
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, bucket: str, key: str, path: str | Path) -> None:
        with self._atomic_target(bucket, key) as tmp:
            shutil.copyfile(path, tmp)

    def put_stream(self, bucket: str, key: str, stream: IO[bytes]) -> None:
        with self._atomic_target(bucket, key) as tmp, open(tmp, "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK_SIZE)

    def get_file(self, bucket: str, key: str, path: str | Path) -> Path:
        src = self._existing(bucket, key)
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest

    def _existing(self, bucket: str, key: str) -> Path:
        path = self._path(bucket, key)
        if not path.is_file():
            raise StorageError(f"object {bucket}/{key} does not exist in {self.describe()}")
        return path

    @contextlib.contextmanager
    def open(self, bucket: str, key: str) -> Iterator[IO[bytes]]:
        with open(self._existing(bucket, key), "rb") as fh:
            yield fh

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def stat(self, bucket: str, key: str) -> int | None:
        path = self._path(bucket, key)
        return path.stat().st_size if path.is_file() else None

    def list_sizes(self, bucket: str, prefix: str = "") -> dict[str, int]:
        base = self.root / check_bucket(bucket)
        return {key: (base / key).stat().st_size for key in self.list(bucket, prefix)}

    def size(self, bucket: str, key: str) -> int:
        return self._existing(bucket, key).stat().st_size

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        base = self.root / check_bucket(bucket)
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.endswith(".part"):
                key = path.relative_to(base).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, bucket: str, key: str) -> None:
        path = self._path(bucket, key)
        path.unlink(missing_ok=True)
        base = self.root / bucket
        for parent in path.parents:  # folders left empty go too, like prefixes on S3
            if parent == base or base not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def copy(self, bucket: str, src_key: str, dst_key: str) -> None:
        with self._atomic_target(bucket, dst_key) as tmp:
            shutil.copyfile(self._existing(bucket, src_key), tmp)

    def raster_uri(self, bucket: str, key: str) -> str:
        return str(self._path(bucket, key))

    def rasterio_env(self, **gdal_options: Any) -> contextlib.AbstractContextManager[Any]:

        env: contextlib.AbstractContextManager[Any] = rasterio.Env(**gdal_options)
        return env


class S3Store(ObjectStore):
    """S3-compatible storage (MinIO, AWS, moto) through boto3. Picklable: the client is rebuilt
    lazily in each process."""

    def __init__(
        self,
        host: str,
        port: int,
        access_key: str,
        secret_key: str,
        secure: bool = False,
        region: str = "us-east-1",
        timeout: float = 5.0,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        self.host, self.port = host, port
        self.access_key, self.secret_key = access_key, secret_key
        self.secure, self.region, self.timeout = secure, region, timeout
        self.tolerance = tolerance
        self.service = Service(f"S3 object store at {host}:{port}", "MINIO_HOST / MINIO_PORT")
        self._client: Any = None
        self._known_buckets: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_known_buckets"] = set()
        return state

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.port}"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name=self.region,
                config=Config(
                    connect_timeout=self.timeout,
                    read_timeout=max(self.timeout, 60),
                    retries={"max_attempts": 3, "mode": "standard"},
                    s3={"addressing_style": "path"},
                    signature_version="s3v4",
                ),
            )
        return self._client

    def describe(self) -> str:
        return f"S3 at {self.endpoint}"

    def _translate(self, exc: Exception, what: str) -> Exception:

        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
            why = "no answer" if isinstance(exc, ReadTimeoutError) else "cannot connect"
            return ServiceUnavailableError(
                f"S3 object store at {self.host}:{self.port} is unreachable ({what}: {why}). "
                "Check MINIO_HOST / MINIO_PORT and that the server is running."
            )
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}:
                return AuthenticationError(
                    f"S3 object store at {self.host}:{self.port} rejected the credentials ({code}). "
                    "Check MINIO_ACCESS_KEY / MINIO_SECRET_KEY."
                )
            if code in {"NoSuchKey", "404", "NoSuchBucket"}:
                return StorageError(f"{what}: not found in {self.describe()}")
            if code in QUOTA_CODES:
                return NoSpaceError(
                    f"{what}: refused by {self.describe()} ({code}): the bucket is full, over its quota, or the "
                    "object is larger than the server accepts. Free space or raise the quota, then rerun."
                )
            return StorageError(f"{what} failed on {self.describe()}: {code} {exc}")
        return StorageError(f"{what} failed on {self.describe()}: {exc}")

    def _call(self, what: str, fn: Any, *args: Any, rewind: IO[bytes] | None = None, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` under the fault policy (faults.ride_out): transient failures are
        retried for up to ``tolerance`` seconds; others become our errors at once. ``rewind``: a
        stream the call consumes, put back at its start before each retry."""
        start = rewind.tell() if rewind is not None else 0

        def attempt() -> Any:
            if rewind is not None:
                rewind.seek(start)
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                cause = _s3_cause(exc)
                if is_transient(cause):
                    raise cause from None
                if isinstance(cause, (BotoCoreError, ClientError)):
                    raise self._translate(cause, what) from None
                raise

        return ride_out(attempt, service=self.service, what=what, tolerance=self.tolerance)

    def calling(self, fn: Callable[[], T], what: str) -> T:
        return self._call(what, fn)  # type: ignore[no-any-return]

    def reading(self, fn: Callable[[], T], what: str) -> T:
        return read_remote(fn, what, self.service, self.tolerance, self.list_buckets)

    def check(self) -> None:
        """One bounded request (no retry, CONNECT_TIMEOUT to connect and to answer): a server
        that accepts connections but never answers fails here within seconds, not minutes."""

        probe = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                retries={"total_max_attempts": 1},
                s3={"addressing_style": "path"},
                signature_version="s3v4",
            ),
        )
        try:  # once: a server that is not there at all is a setting to fix, not an outage to ride out
            probe.list_buckets()
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "listing buckets") from None

    def ensure_bucket(self, bucket: str) -> None:
        check_bucket(bucket)
        if bucket in self._known_buckets:
            return

        def head_or_create() -> None:
            try:
                self.client.head_bucket(Bucket=bucket)
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code", "") not in {"404", "NoSuchBucket"}:
                    raise
            try:
                self.client.create_bucket(Bucket=bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

        self._call(f"checking bucket {bucket}", head_or_create)
        self._known_buckets.add(bucket)

    def list_buckets(self) -> list[str]:
        resp = self._call("listing buckets", self.client.list_buckets)
        return sorted(b["Name"] for b in resp.get("Buckets", []))

    @staticmethod
    def _transfer() -> Any:
        """Multipart transfers in 8 MiB parts, 4 at a time, at most 4 parts read ahead from a
        stream: memory stays bounded (a few tens of MiB) whatever the object size."""

        config = TransferConfig(multipart_threshold=8 * 2**20, multipart_chunksize=8 * 2**20, max_concurrency=4)
        config.max_in_memory_upload_chunks = 4  # s3transfer's read-ahead from non-seekable streams (default 10)
        config.max_in_memory_download_chunks = 4
        return config

    def put_file(self, bucket: str, key: str, path: str | Path) -> None:
        self.ensure_bucket(bucket)
        # upload_file streams in parts; the object only appears when the upload completes.
        self._call(
            f"uploading {bucket}/{key}",
            self.client.upload_file,
            str(path),
            bucket,
            check_key(key),
            ExtraArgs={"ContentType": media_type(key)},
            Config=self._transfer(),
        )

    def put_stream(self, bucket: str, key: str, stream: IO[bytes]) -> None:
        self.ensure_bucket(bucket)
        if not stream.seekable():  # one try: what was read cannot be sent again (the caller's task retries)
            try:
                self.client.upload_fileobj(
                    stream,
                    bucket,
                    check_key(key),
                    ExtraArgs={"ContentType": media_type(key)},
                    Config=self._transfer(),
                )
            except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
                cause = _s3_cause(exc)
                if is_transient(cause) or not isinstance(cause, (BotoCoreError, ClientError)):
                    raise cause from None
                raise self._translate(cause, f"uploading {bucket}/{key}") from None
            return
        self._call(
            f"uploading {bucket}/{key}",
            self.client.upload_fileobj,
            _KeepOpen(stream),  # s3transfer closes what it was given, even when the upload fails
            bucket,
            check_key(key),
            ExtraArgs={"ContentType": media_type(key)},
            Config=self._transfer(),
            rewind=stream,
        )

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """The whole object, read again from the start when the connection drops midway."""

        def read() -> bytes:
            body = self.client.get_object(Bucket=bucket, Key=check_key(key))["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

        data: bytes = self._call(f"reading {bucket}/{key}", read)
        return data

    def get_file(self, bucket: str, key: str, path: str | Path) -> Path:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"
        try:
            self._call(
                f"downloading {bucket}/{key}",
                self.client.download_file,
                bucket,
                check_key(key),
                str(tmp),
                Config=self._transfer(),
            )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    @contextlib.contextmanager
    def open(self, bucket: str, key: str) -> Iterator[IO[bytes]]:
        resp = self._call(f"reading {bucket}/{key}", self.client.get_object, Bucket=bucket, Key=check_key(key))
        body = resp["Body"]
        try:
            yield body
        finally:
            body.close()

    def exists(self, bucket: str, key: str) -> bool:
        return self.stat(bucket, key) is not None

    def stat(self, bucket: str, key: str) -> int | None:
        """The object's size, or None when there is no such object (one HEAD request)."""

        def head() -> int | None:
            try:
                return int(self.client.head_object(Bucket=bucket, Key=check_key(key))["ContentLength"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NoSuchBucket"}:
                    return None
                raise

        size: int | None = self._call(f"checking {bucket}/{key}", head)
        return size

    def size(self, bucket: str, key: str) -> int:
        resp = self._call(f"checking {bucket}/{key}", self.client.head_object, Bucket=bucket, Key=check_key(key))
        return int(resp["ContentLength"])

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(self.list_sizes(bucket, prefix))

    def list_sizes(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix`` with its size (listed again whole after a dropped page)."""

        def listing() -> dict[str, int]:
            found: dict[str, int] = {}
            paginator = self.client.get_paginator("list_objects_v2")
            try:
                for page in paginator.paginate(Bucket=check_bucket(bucket), Prefix=prefix):
                    found.update((obj["Key"], int(obj["Size"])) for obj in page.get("Contents", []))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                    return {}
                raise
            return found

        sizes: dict[str, int] = self._call(f"listing {bucket}/{prefix}", listing)
        return sizes

    def delete(self, bucket: str, key: str) -> None:
        self._call(f"deleting {bucket}/{key}", self.client.delete_object, Bucket=bucket, Key=check_key(key))

    def copy(self, bucket: str, src_key: str, dst_key: str) -> None:
        # managed copy: server side, multipart above the threshold (objects over 5 GB too)
        self._call(
            f"copying {bucket}/{src_key} to {dst_key}",
            self.client.copy,
            {"Bucket": bucket, "Key": check_key(src_key)},
            bucket,
            check_key(dst_key),
            ExtraArgs={"ContentType": media_type(dst_key), "MetadataDirective": "REPLACE"},
            Config=self._transfer(),
        )

    def raster_uri(self, bucket: str, key: str) -> str:
        return f"s3://{check_bucket(bucket)}/{check_key(key)}"

    def gdal_options(self) -> dict[str, str]:
        # Credentials go through rasterio's AWSSession; these are the endpoint options.
        return {
            "AWS_S3_ENDPOINT": f"{self.host}:{self.port}",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_HTTPS": "YES" if self.secure else "NO",
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.jp2,.vrt",
            # GDAL's own retries of a failed HTTP request (429, 5xx, dropped connections); a read
            # that still fails is retried whole by the task (faults.ride_out, OUTAGE_TOLERANCE)
            "GDAL_HTTP_MAX_RETRY": "4",
            "GDAL_HTTP_RETRY_DELAY": "1",
        }

    def rasterio_env(self, **gdal_options: Any) -> contextlib.AbstractContextManager[Any]:

        session = AWSSession(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            endpoint_url=f"{self.host}:{self.port}",
        )
        env: contextlib.AbstractContextManager[Any] = rasterio.Env(
            session=session, **(self.gdal_options() | gdal_options)
        )
        return env


def _s3_cause(exc: BaseException) -> BaseException:
    """boto3's managed transfers wrap the server's answer (S3UploadFailedError around the
    ClientError): the answer is what says whether to retry and what to tell the user."""
    cause = exc.__context__
    if isinstance(exc, S3UploadFailedError) and isinstance(cause, (BotoCoreError, ClientError)):
        return cast(BaseException, cause)
    return exc


class _KeepOpen:
    """A stream whose ``close`` leaves the underlying stream open, so a retry can rewind it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def close(self) -> None:
        pass


def no_space(where: Path, what: str, partial: Path | None = None) -> NoSpaceError:
    """The error of a full disk or quota: the path, what was being written, how much it held."""
    written = partial.stat().st_size if partial is not None and partial.exists() else 0
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = 0
    return NoSpaceError(
        f"no space left on the file system of {where} ({what}: {written / 2**20:.1f} MiB written, "
        f"{free / 2**20:.1f} MiB free). Free space there (or point LANDCOVERPY_HOME / TMP_DIR elsewhere) "
        "and rerun; nothing partial was kept."
    )


def read_remote(fn: Callable[[], T], what: str, service: Service, tolerance: float, probe: Callable[[], object]) -> T:
    """``fn``, which reads rasters of an S3 store in place (GDAL's /vsis3/), under the fault
    policy: failed reads are retried for ``tolerance`` seconds. GDAL says an object "does not
    exist" when it could not reach the server, so such a failure is checked with ``probe`` (a
    call to the store that rides out an outage) before the read is tried again; a second refusal
    is a missing object. Retries bypass GDAL's /vsis3/ cache, which remembers the failed requests.
    A read that fails for good is a RasterError naming ``what``."""
    tries = [0]

    def read() -> T:
        if not tries[0]:
            tries[0] += 1
            return fn()
        tries[0] += 1
        previous = get_gdal_config("CPL_VSIL_CURL_NON_CACHED")
        set_gdal_config("CPL_VSIL_CURL_NON_CACHED", "/vsis3/")
        try:
            return fn()
        finally:
            set_gdal_config("CPL_VSIL_CURL_NON_CACHED", previous)

    def attempt() -> T:
        try:
            return read()
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            if is_transient(exc, remote_rasters=True):
                raise
            if "does not exist" not in str(exc).lower():
                raise RasterError(f"{what}: {exc}") from None
        probe()
        try:
            return read()
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            if is_transient(exc, remote_rasters=True):
                raise
            raise RasterError(f"{what}: {exc}") from None

    return ride_out(attempt, service=service, what=what, tolerance=tolerance, remote_rasters=True)


def open_store(settings: Settings, check: bool = True) -> ObjectStore:
    """The store the settings select: S3 when MINIO_HOST is set, else a local directory."""
    store: ObjectStore
    if settings.uses_s3:
        store = S3Store(
            host=str(settings.MINIO_HOST),
            port=settings.MINIO_PORT,
            access_key=settings.MINIO_ACCESS_KEY,
            secret_key=settings.MINIO_SECRET_KEY.get_secret_value(),
            secure=settings.MINIO_SECURE,
            region=settings.MINIO_REGION,
            timeout=settings.CONNECT_TIMEOUT,
            tolerance=settings.OUTAGE_TOLERANCE,
        )
    else:
        store = LocalStore(settings.store_path)
    if check:
        store.check()
    return store


@contextlib.contextmanager
def local_copy(store: ObjectStore, bucket: str, key: str, tmp_dir: str | Path | None = None) -> Iterator[Path]:
    """A temporary local copy of an object (for libraries that cannot read from S3)."""
    if isinstance(store, LocalStore):
        yield Path(store.raster_uri(bucket, key))
        return
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        path = Path(tmp) / Path(key).name
        store.get_file(bucket, key, path)
        yield path
