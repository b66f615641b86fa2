"""Streaming the assets a STAC catalog points at: ``http(s)`` hrefs with requests (SAS-signed first
for Planetary Computer), ``s3://`` hrefs with boto3 from the endpoint the asset's storage scheme
names. Failures become our error types: refused keys -> AuthenticationError, 429/5xx and dropped
connections -> retried by :func:`landcoverpy.retry.with_retries`, anything else -> ProviderError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from landcoverpy.errors import AuthenticationError, ProviderError, TransientError
from landcoverpy.retry import is_transient_status


@dataclass(frozen=True)
class S3Location:
    """Where an ``s3://`` href is read: the endpoint (None: AWS) and whether the bucket bills the
    reader."""

    endpoint: str | None
    requester_pays: bool


class AssetReader:
    """Opens asset hrefs as binary streams (never read whole into memory). Picklable: its clients
    stay in the process that made them."""

    def __init__(self, timeout: float = 30.0, s3_access_key: str | None = None,
                 s3_secret_key: str | None = None) -> None:
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
        import requests

        resp = requests.get(href, stream=True, timeout=self.timeout)
        if resp.status_code in (401, 403):
            resp.close()
            raise AuthenticationError(f"{shown}: access refused (HTTP {resp.status_code})")
        if is_transient_status(resp.status_code):
            resp.close()
            raise TransientError(f"{shown}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            resp.close()
            raise ProviderError(f"{shown}: HTTP {resp.status_code}")
        resp.raw.decode_content = True
        try:
            yield NetworkStream(resp.raw, shown)  # type: ignore[misc]
        finally:
            resp.close()

    def _s3_client(self, where: S3Location) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        key = (where.endpoint, where.requester_pays)
        if key not in self._s3:
            session = boto3.session.Session()
            creds: dict[str, Any] = {}
            signature: dict[str, Any] = {}
            if self.s3_access_key and self.s3_secret_key:
                creds = {"aws_access_key_id": self.s3_access_key, "aws_secret_access_key": self.s3_secret_key}
            elif session.get_credentials() is None and not where.requester_pays:
                signature = {"signature_version": UNSIGNED}  # a public bucket, read anonymously
            config = Config(connect_timeout=self.timeout, read_timeout=self.timeout,
                            retries={"mode": "standard", "max_attempts": 3},
                            s3={"addressing_style": "path"} if where.endpoint else None, **signature)
            self._s3[key] = session.client("s3", endpoint_url=where.endpoint, config=config,
                                           region_name="us-east-1" if where.endpoint else None, **creds)
        return self._s3[key]

    @contextlib.contextmanager
    def _open_s3(self, href: str, where: S3Location) -> Iterator[IO[bytes]]:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

        bucket, _, key = href[len("s3://"):].partition("/")
        shown = where.endpoint or "AWS S3"
        extra = {"RequestPayer": "requester"} if where.requester_pays else {}
        try:
            body = self._s3_client(where).get_object(Bucket=bucket, Key=key, **extra)["Body"]
        except NoCredentialsError:
            raise AuthenticationError(f"{href}: {shown} needs S3 keys; set STAC_S3_ACCESS_KEY and STAC_S3_SECRET_KEY "
                                      "(for CDSE, keys made in the Copernicus Data Space dashboard)") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise AuthenticationError(f"{href}: {shown} refused the S3 keys ({code}); check STAC_S3_ACCESS_KEY "
                                          "and STAC_S3_SECRET_KEY") from None
            if is_transient_status(status) or code in ("SlowDown", "RequestTimeout"):
                raise TransientError(f"{href}: {shown} answered {code or status}") from None
            raise ProviderError(f"{href}: {shown} answered {code or status} ({exc})") from None
        except EndpointConnectionError as exc:
            raise ConnectionError(f"{href}: cannot reach {shown} ({exc}); check STAC_S3_ENDPOINT") from None
        except BotoCoreError as exc:
            raise ConnectionError(f"{href}: {shown}: {exc}") from None
        try:
            yield NetworkStream(body, href)  # type: ignore[misc]
        finally:
            body.close()


def sign_href(href: str) -> str:
    """A Planetary Computer blob href with a SAS token (the ``planetary-computer`` package, which
    fetches tokens from ``PC_SDK_SAS_URL`` and leaves hrefs outside Azure blob storage as they are)."""
    import requests

    try:
        import planetary_computer
    except ImportError:
        raise ProviderError("reading Planetary Computer assets needs their hrefs signed: "
                            "pip install 'landcoverpy[planetary]'") from None
    try:
        return str(planetary_computer.sign(href))
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if is_transient_status(status):
            raise TransientError(f"signing {href}: token endpoint answered HTTP {status}") from None
        raise ProviderError(f"signing {href}: token endpoint answered HTTP {status}; check PC_SDK_SUBSCRIPTION_KEY") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ConnectionError(f"signing {href}: token endpoint unreachable ({type(exc).__name__})") from None


class NetworkStream:
    """A response body whose transport failures (connection dropped, short read) surface as
    ConnectionError, which the acquisition retries with backoff."""

    def __init__(self, raw: Any, href: str) -> None:
        self.raw, self.href = raw, href

    def read(self, size: int = -1) -> bytes:
        import urllib3
        from botocore.exceptions import BotoCoreError

        try:
            return self.raw.read(None if size < 0 else size)  # type: ignore[no-any-return]
        except (urllib3.exceptions.HTTPError, OSError, BotoCoreError) as exc:
            raise ConnectionError(f"{self.href}: connection broken ({type(exc).__name__})") from exc

    def readable(self) -> bool:
        return True
