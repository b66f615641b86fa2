"""Reading the assets a STAC catalog points at: ``http(s)`` hrefs with requests (SAS-signed first
for Planetary Computer), ``s3://`` hrefs with boto3 from the endpoint the asset's storage scheme
names; whole (a stream) or by byte ranges (a seekable file GDAL reads windows of a COG or a
JPEG 2000 through, counting the bytes it fetched). Failures become our error types: refused keys
-> AuthenticationError, 429/5xx and dropped connections -> retried by
:func:`landcoverpy.faults.call_source`, anything else -> ProviderError."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import boto3
import rasterio.errors
import requests
import urllib3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError
from rasterio._err import CPLE_BaseError
from rasterio._vsiopener import FileContainer

from landcoverpy.errors import AuthenticationError, ProviderError, TransientError
from landcoverpy.faults import is_transient_status


@dataclass(frozen=True)
class S3Location:
    """Where an ``s3://`` href is read: the endpoint (None: AWS) and whether the bucket bills the
    reader."""

    endpoint: str | None
    requester_pays: bool


class AssetReader:
    """Opens asset hrefs as binary streams (never read whole into memory). Picklable: its clients
    stay in the process that made them."""

    def __init__(
        self, timeout: float = 30.0, s3_access_key: str | None = None, s3_secret_key: str | None = None
    ) -> None:
        self.timeout, self.s3_access_key, self.s3_secret_key = timeout, s3_access_key, s3_secret_key
        self._s3: dict[tuple[str | None, bool], Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_s3": {}}

    @contextlib.contextmanager
    def open(self, href: str, s3: S3Location | None = None, sign: bool = False) -> Iterator[IO[bytes]]:
        if href.startswith("s3://"):
            with self._open_s3(href, s3 or S3Location(None, False)) as stream:
                yield stream
        else:
            with self._open_http(sign_href(href) if sign else href, href) as stream:
                yield stream

    @contextlib.contextmanager
    def _open_http(self, href: str, shown: str) -> Iterator[IO[bytes]]:

        resp = requests.get(href, stream=True, timeout=self.timeout)
        if resp.status_code >= 400:
            resp.close()
            self._check_http(resp, shown)
        resp.raw.decode_content = True
        try:
            yield NetworkStream(resp.raw, shown)  # type: ignore[misc]
        finally:
            resp.close()

    def range_file(self, href: str, s3: S3Location | None = None, sign: bool = False) -> RemoteFile:
        """A seekable, read-only file over ``href`` that fetches only the byte ranges read."""
        if href.startswith("s3://"):
            where = s3 or S3Location(None, False)
            bucket, _, key = href[len("s3://") :].partition("/")
            extra = {"RequestPayer": "requester"} if where.requester_pays else {}
            client = self._s3_client(where)
            with self._s3_errors(href, where):
                size = int(client.head_object(Bucket=bucket, Key=key, **extra)["ContentLength"])

            def fetch_s3(start: int, end: int) -> bytes:
                with self._s3_errors(href, where):
                    body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}", **extra)["Body"]
                    try:
                        return bytes(NetworkStream(body, href).read())
                    finally:
                        body.close()

            return RemoteFile(fetch_s3, size, href)
        url = sign_href(href) if sign else href

        session = requests.Session()

        def get(start: int, end: int) -> Any:
            try:
                resp = session.get(url, headers={"Range": f"bytes={start}-{end}"}, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise ConnectionError(f"{href}: {type(exc).__name__}") from None
            self._check_http(resp, href)
            if resp.status_code != 206:
                raise ProviderError(
                    f"{href}: the server does not answer byte ranges (HTTP {resp.status_code}); "
                    "fetch whole products (run without --aoi)"
                )
            return resp

        first = get(0, RemoteFile.CHUNK - 1)
        total = first.headers.get("Content-Range", "").rpartition("/")[2]
        if not total.isdigit():
            raise ProviderError(
                f"{href}: the server gives no Content-Range length; fetch whole products (run without --aoi)"
            )
        return RemoteFile(lambda start, end: bytes(get(start, end).content), int(total), href, {0: first.content})

    @staticmethod
    def _check_http(resp: Any, shown: str) -> None:
        if resp.status_code in (401, 403):
            raise AuthenticationError(f"{shown}: access refused (HTTP {resp.status_code})")
        if is_transient_status(resp.status_code):
            raise TransientError(f"{shown}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise ProviderError(f"{shown}: HTTP {resp.status_code}")

    def _s3_client(self, where: S3Location) -> Any:

        key = (where.endpoint, where.requester_pays)
        if key not in self._s3:
            session = boto3.session.Session()
            creds: dict[str, Any] = {}
            signature: dict[str, Any] = {}
            if self.s3_access_key and self.s3_secret_key:
                creds = {"aws_access_key_id": self.s3_access_key, "aws_secret_access_key": self.s3_secret_key}
            elif session.get_credentials() is None and not where.requester_pays:
                signature = {"signature_version": UNSIGNED}  # a public bucket, read anonymously
            config = Config(
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                retries={"mode": "standard", "max_attempts": 3},
                s3={"addressing_style": "path"} if where.endpoint else None,
                **signature,
            )
            self._s3[key] = session.client(
                "s3",
                endpoint_url=where.endpoint,
                config=config,
                region_name="us-east-1" if where.endpoint else None,
                **creds,
            )
        return self._s3[key]

    @contextlib.contextmanager
    def _open_s3(self, href: str, where: S3Location) -> Iterator[IO[bytes]]:
        bucket, _, key = href[len("s3://") :].partition("/")
        extra = {"RequestPayer": "requester"} if where.requester_pays else {}
        with self._s3_errors(href, where):
            body = self._s3_client(where).get_object(Bucket=bucket, Key=key, **extra)["Body"]
        try:
            yield NetworkStream(body, href)  # type: ignore[misc]
        finally:
            body.close()

    @staticmethod
    @contextlib.contextmanager
    def _s3_errors(href: str, where: S3Location) -> Iterator[None]:

        shown = where.endpoint or "AWS S3"
        try:
            yield
        except NoCredentialsError:
            raise AuthenticationError(
                f"{href}: {shown} needs S3 keys; set STAC_S3_ACCESS_KEY and STAC_S3_SECRET_KEY "
                "(for CDSE, keys made in the Copernicus Data Space dashboard)"
            ) from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise AuthenticationError(
                    f"{href}: {shown} refused the S3 keys ({code}); check STAC_S3_ACCESS_KEY and STAC_S3_SECRET_KEY"
                ) from None
            if is_transient_status(status) or code in ("SlowDown", "RequestTimeout"):
                raise TransientError(f"{href}: {shown} answered {code or status}") from None
            raise ProviderError(f"{href}: {shown} answered {code or status} ({exc})") from None
        except EndpointConnectionError as exc:
            raise ConnectionError(f"{href}: cannot reach {shown} ({exc}); check STAC_S3_ENDPOINT") from None
        except BotoCoreError as exc:
            raise ConnectionError(f"{href}: {shown}: {exc}") from None


def sign_href(href: str) -> str:
    """A Planetary Computer blob href with a SAS token (the ``planetary-computer`` package, which
    fetches tokens from ``PC_SDK_SAS_URL`` and leaves hrefs outside Azure blob storage as they are)."""

    try:
        import planetary_computer
    except ImportError:
        raise ProviderError(
            "reading Planetary Computer assets needs their hrefs signed: pip install 'landcoverpy[planetary]'"
        ) from None
    try:
        return str(planetary_computer.sign(href))
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if is_transient_status(status):
            raise TransientError(f"signing {href}: token endpoint answered HTTP {status}") from None
        raise ProviderError(
            f"signing {href}: token endpoint answered HTTP {status}; check PC_SDK_SUBSCRIPTION_KEY"
        ) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ConnectionError(f"signing {href}: token endpoint unreachable ({type(exc).__name__})") from None


class NetworkStream:
    """A response body whose transport failures (connection dropped, short read) surface as
    ConnectionError, which the acquisition retries with backoff."""

    def __init__(self, raw: Any, href: str) -> None:
        self.raw, self.href = raw, href

    def read(self, size: int = -1) -> bytes:

        try:
            return self.raw.read(None if size < 0 else size)
        except (urllib3.exceptions.HTTPError, OSError, BotoCoreError) as exc:
            raise ConnectionError(f"{self.href}: connection broken ({type(exc).__name__})") from exc

    def readable(self) -> bool:
        return True


class RemoteFile:
    """A remote file read by byte ranges, in chunks of :attr:`CHUNK` bytes, each fetched once
    whatever reads it: what GDAL reads a window of a COG (or a tiled JPEG 2000) through
    (``rasterio.open(name, opener=remote.opener(name))``). :attr:`fetched` counts the bytes that
    came over the network."""

    CHUNK = 16 * 1024  # GDAL's first read of a TIFF header; tile reads span several chunks, fetched at once

    def __init__(
        self, fetch: Callable[[int, int], bytes], size: int, name: str, chunks: dict[int, bytes] | None = None
    ) -> None:
        self._fetch, self.size, self.name = fetch, size, name
        self._chunks: dict[int, bytes] = dict(chunks or {})
        self.fetched = sum(len(c) for c in self._chunks.values())
        self.failure: BaseException | None = None  # why a fetch failed under GDAL (see reading())

    @contextlib.contextmanager
    def reading(self) -> Iterator[RemoteFile]:
        """Where GDAL reads this file: a fetch that failed under it (a dropped connection, an
        HTTP 503) is raised as itself, so the fault policy sees it, instead of GDAL's "Read
        failed"."""
        self.failure = None
        try:
            yield self
        except (rasterio.errors.RasterioError, CPLE_BaseError):
            if self.failure is not None:
                raise self.failure from None
            raise

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes ``start`` (included) to ``end`` (excluded), from the chunks, fetching the missing
        ones (each run of consecutive ones in one request)."""
        end = min(end, self.size)
        if end <= start:
            return b""
        first, last = start // self.CHUNK, (end - 1) // self.CHUNK
        missing = [i for i in range(first, last + 1) if i not in self._chunks]
        runs: list[list[int]] = []
        for i in missing:  # consecutive missing chunks, one request each run: no cached chunk twice
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            lo, hi = run[0], run[-1]
            data = self._fetch(lo * self.CHUNK, min(self.size, (hi + 1) * self.CHUNK) - 1)
            self.fetched += len(data)
            for i in run:
                self._chunks[i] = data[(i - lo) * self.CHUNK : (i - lo + 1) * self.CHUNK]
        joined = b"".join(self._chunks[i] for i in range(first, last + 1))
        offset = start - first * self.CHUNK
        return joined[offset : offset + end - start]

    def opener(self, name: str) -> Any:
        """A rasterio opener serving this file as ``name`` (and nothing else: no sidecar files)."""

        remote = self

        class Container(FileContainer):
            def isfile(self, path: str) -> bool:
                return str(path).endswith(name)

            def isdir(self, path: str) -> bool:
                return False

            def ls(self, path: str) -> list[str]:
                return []

            def mtime(self, path: str) -> int:
                return 0

            def size(self, path: str) -> int:
                return remote.size

            def rm(self, path: str) -> None:
                raise OSError(f"{name} is read-only")

            def open(self, path: str, mode: str = "r", **kwargs: Any) -> RangeFile:
                if not self.isfile(path):
                    raise FileNotFoundError(path)
                return RangeFile(remote)

        return Container()


class RangeFile(io.RawIOBase):
    """One open handle on a :class:`RemoteFile` (GDAL opens a file several times)."""

    def __init__(self, remote: RemoteFile) -> None:
        super().__init__()
        self.remote, self._pos = remote, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.remote.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = self.remote.size if size is None or size < 0 else self._pos + size
        try:
            data = self.remote.read_range(self._pos, end)
        except Exception as exc:  # GDAL called us: an exception cannot cross it, so it is kept
            self.remote.failure = exc  # for RemoteFile.reading() and GDAL sees a short read
            return b""
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
