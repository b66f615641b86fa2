"""Google Cloud Storage: the public bucket ``gcp-public-data-sentinel-2`` (SAFE products under
``L2/tiles/UU/L/SS/`` for L2A and ``tiles/UU/L/SS/`` for L1C).

Anonymous access by default; a service-account JSON when GOOGLE_APPLICATION_CREDENTIALS is
given; an emulator or mirror endpoint (STORAGE_EMULATOR_HOST) when set.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Iterator
from typing import IO, Any

from landcoverpy.errors import AuthenticationError, ProviderError, ProviderUnavailableError, TransientError
from landcoverpy.sentinel2 import normalise_tile
from landcoverpy.sources.base import BandAsset, ProductCandidate, Provider, in_range
from landcoverpy.sources.safe import parse_product_metadata, pick_band_files

log = logging.getLogger(__name__)

PUBLIC_BUCKET = "gcp-public-data-sentinel-2"
_SENSING = re.compile(r"_MSIL(1C|2A)_(\d{8}T\d{6})_")


class GCSProvider(Provider):
    settings_hint = "the network (or STORAGE_EMULATOR_HOST)"
    name = "gcs"

    def __init__(
        self,
        bucket: str = PUBLIC_BUCKET,
        level: str = "L2A",
        credentials_file: str | None = None,
        endpoint: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.bucket, self.level = bucket, level
        self.credentials_file, self.endpoint, self.timeout = credentials_file, endpoint, timeout
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_client": None}

    def describe(self) -> str:
        where = self.endpoint or "https://storage.googleapis.com"
        return f"Google Cloud Storage gs://{self.bucket} ({self.level}) at {where}"

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            options = ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None
            if self.credentials_file:
                from google.oauth2 import service_account

                try:
                    creds = service_account.Credentials.from_service_account_file(self.credentials_file)
                except (OSError, ValueError) as exc:
                    raise AuthenticationError(
                        f"cannot use the service-account key {self.credentials_file}: {exc}. "
                        "Check GOOGLE_APPLICATION_CREDENTIALS."
                    ) from None
                self._client = storage.Client(project=creds.project_id, credentials=creds, client_options=options)
            else:
                self._client = storage.Client(
                    project="anonymous", credentials=AnonymousCredentials(), client_options=options
                )
        return self._client

    def _retry(self) -> Any:
        """The library's retry policy, bounded by our timeout (ours adds backoff on top)."""
        from google.cloud.storage.retry import DEFAULT_RETRY

        return (
            DEFAULT_RETRY.with_timeout(self.timeout)
            if hasattr(DEFAULT_RETRY, "with_timeout")
            else DEFAULT_RETRY.with_deadline(self.timeout)
        )

    def _prefix(self, tile: str) -> str:
        zone, band, square = tile[:2], tile[2], tile[3:]
        root = "L2/tiles" if self.level == "L2A" else "tiles"
        return f"{root}/{zone}/{band}/{square}/"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc

        try:
            return fn(*args, **kwargs)
        except (gexc.Unauthorized, gexc.Forbidden, aexc.GoogleAuthError) as exc:
            raise AuthenticationError(
                f"{self.describe()}: {what} refused ({exc}). Check GOOGLE_APPLICATION_CREDENTIALS."
            ) from None
        except gexc.NotFound as exc:
            raise ProviderError(f"{self.describe()}: {what}: not found ({exc})") from None
        except gexc.RetryError as exc:  # the library's own retries ran out: on what?
            cause = getattr(exc, "cause", None)
            if isinstance(cause, OSError):  # requests' connection errors and timeouts: unreachable
                raise ConnectionError(f"{self.describe()}: {what}: {type(cause).__name__}") from exc
            raise TransientError(f"{self.describe()}: {what} failed ({type(exc).__name__})") from None
        except (gexc.TooManyRequests, gexc.ServerError) as exc:
            raise TransientError(f"{self.describe()}: {what} failed ({type(exc).__name__})") from None
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(f"{self.describe()}: {what} failed ({exc})") from None
        except (OSError, ConnectionError) as exc:
            # requests' ConnectionError is an OSError: retried by the caller's backoff
            raise ConnectionError(f"{self.describe()}: {what}: {exc}") from exc

    def search(self, tile: str, start: dt.date, end: dt.date) -> list[ProductCandidate]:
        tile = normalise_tile(tile)
        prefix = self._prefix(tile)

        def listing() -> list[str]:
            it = self.client.list_blobs(
                self.bucket, prefix=prefix, delimiter="/", timeout=self.timeout, retry=self._retry()
            )
            for _ in it:  # consume pages so prefixes are filled
                pass
            return sorted(it.prefixes)

        try:
            folders = self._call(f"listing {prefix}", listing)
        except ConnectionError as exc:  # retried by the caller (faults.call_source)
            raise ProviderUnavailableError(f"{exc}. Check the network or STORAGE_EMULATOR_HOST.") from None
        products = []
        for folder in folders:
            name = folder.rstrip("/").rsplit("/", 1)[-1]
            match = _SENSING.search(name)
            if not name.endswith(".SAFE") or not match:
                continue
            when = dt.datetime.strptime(match.group(2), "%Y%m%dT%H%M%S")
            if not in_range(when, start, end):
                continue
            products.append(self._candidate(folder))
        return products

    def _candidate(self, folder: str) -> ProductCandidate:
        level = self.level
        mtd_name = f"{folder}MTD_MSIL{'2A' if level == 'L2A' else '1C'}.xml"
        xml = self._call(
            f"reading {mtd_name}",
            self.client.bucket(self.bucket).blob(mtd_name).download_as_bytes,
            timeout=self.timeout,
            retry=self._retry(),
        )
        meta = parse_product_metadata(xml.decode("utf-8"), f"gs://{self.bucket}/{mtd_name}")
        blobs = self._call(
            f"listing {folder}",
            lambda: {
                b.name: b.size
                for b in self.client.list_blobs(
                    self.bucket, prefix=f"{folder}GRANULE/", timeout=self.timeout, retry=self._retry()
                )
            },
        )
        picked = pick_band_files([b[len(folder) :] for b in blobs], meta.level)
        assets = {
            b: BandAsset(band=b, href=folder + rel, resolution=res, size=blobs.get(folder + rel))
            for b, (rel, res) in picked.items()
        }
        return ProductCandidate(
            product_id=meta.product_id,
            tile=meta.tile,
            sensing_time=meta.sensing_time,
            platform=meta.platform,
            level=meta.level,
            processing_baseline=meta.processing_baseline,
            cloud_percentage=meta.cloud_percentage,
            nodata_percentage=meta.nodata_percentage,
            provider=self.name,
            assets=assets,
            extra={"offsets": meta.offsets, "gcs_folder": folder},
        )

    @contextlib.contextmanager
    def open_asset(self, product: ProductCandidate, asset: BandAsset) -> Iterator[IO[bytes]]:
        blob = self.client.bucket(self.bucket).blob(asset.href)
        reader = self._call(f"opening {asset.href}", blob.open, "rb", chunk_size=8 * 1024 * 1024)
        try:
            yield reader
        finally:
            reader.close()
