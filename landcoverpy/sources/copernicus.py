"""Copernicus hub (DHuS API) through sentinelsat: OpenSearch search, OData download with MD5
check. The original Copernicus Open Access Hub (SciHub) closed in 2023; use this provider with a
DHuS mirror (national collaborative ground segments and similar), SENTINEL_HOST.

Products arrive as zipped SAFE folders: each is downloaded once per worker into TMP_DIR (resumed
and checksummed by sentinelsat), then its bands are streamed out of the zip into the store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import requests

from landcoverpy.errors import AuthenticationError, ProviderError, ProviderUnavailableError
from landcoverpy.sentinel2 import BAND_RESOLUTION, L1C_BANDS, L2A_BANDS, normalise_tile
from landcoverpy.sources.base import BandAsset, ProductCandidate, Provider, in_range
from landcoverpy.sources.safe import pick_band_files

log = logging.getLogger(__name__)
_LOCK = threading.Lock()


class CopernicusProvider(Provider):
    settings_hint = "SENTINEL_HOST"
    name = "copernicus"

    def __init__(
        self,
        host: str,
        username: str,
        password: str,
        level: str = "L2A",
        download_dir: str | Path = "/tmp/landcoverpy/dhus",
        timeout: float = 60.0,
    ) -> None:
        self.host = host if host.endswith("/") else host + "/"
        self.username, self.password, self.level = username, password, level
        self.download_dir, self.timeout = Path(download_dir), timeout

    def describe(self) -> str:
        return f"DHuS hub {self.host}"

    def _api(self) -> Any:
        from sentinelsat import SentinelAPI

        return SentinelAPI(self.username, self.password, self.host, show_progressbars=False, timeout=self.timeout)

    def _translate(self, exc: Exception, what: str) -> Exception:
        from sentinelsat.exceptions import InvalidChecksumError, ServerError, UnauthorizedError

        if isinstance(exc, UnauthorizedError):
            return AuthenticationError(
                f"{self.describe()} rejected the credentials while {what}. Check SENTINEL_USERNAME / SENTINEL_PASSWORD."
            )
        if isinstance(exc, InvalidChecksumError):
            return ProviderError(f"{self.describe()}: {what}: checksum mismatch, download discarded")
        if isinstance(exc, ServerError):
            return ProviderError(f"{self.describe()}: {what}: {exc}")
        return exc

    def search(self, tile: str, start: dt.date, end: dt.date) -> list[ProductCandidate]:

        tile = normalise_tile(tile)
        try:
            found = self._api().query(
                date=(start, end + dt.timedelta(days=1)),
                platformname="Sentinel-2",
                producttype="S2MSI2A" if self.level == "L2A" else "S2MSI1C",
                filename=f"*_T{tile}_*",
            )
        except (requests.ConnectionError, requests.Timeout):
            raise ProviderUnavailableError(f"{self.describe()} is unreachable; check SENTINEL_HOST") from None
        except Exception as exc:  # sentinelsat's own errors
            translated = self._translate(exc, "searching")
            if translated is exc:
                raise
            raise translated from None
        bands = L2A_BANDS if self.level == "L2A" else L1C_BANDS
        out = []
        for uuid, props in found.items():
            when = props["beginposition"]
            if not in_range(when, start, end):
                continue
            assets = {b: BandAsset(band=b, href=f"{uuid}#{b}", resolution=BAND_RESOLUTION[b]) for b in bands}
            out.append(
                ProductCandidate(
                    product_id=props["title"],
                    tile=tile,
                    sensing_time=when.replace(tzinfo=None),
                    platform=str(props.get("platformname", "Sentinel-2")),
                    level=self.level,
                    processing_baseline=props.get("processingbaseline"),
                    cloud_percentage=float(props.get("cloudcoverpercentage", 0.0)),
                    nodata_percentage=0.0,
                    provider=self.name,
                    assets=assets,
                    extra={"uuid": uuid},
                )
            )
        return out

    def _zip(self, uuid: str) -> Path:
        """Download (or reuse) the product zip; sentinelsat resumes and checks the MD5."""
        self.download_dir.mkdir(parents=True, exist_ok=True)
        with _LOCK:
            try:
                info = self._api().download(uuid, str(self.download_dir))
            except Exception as exc:
                translated = self._translate(exc, f"downloading {uuid}")
                if translated is exc:
                    raise
                raise translated from None
        return Path(info["path"])

    @contextlib.contextmanager
    def open_asset(self, product: ProductCandidate, asset: BandAsset) -> Iterator[IO[bytes]]:
        uuid, band = asset.href.split("#", 1)
        path = self._zip(uuid)
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            path.unlink(missing_ok=True)
            raise ProviderError(f"{product.product_id}: the downloaded archive is not a zip; removed") from None
        with zf:
            picked = pick_band_files(zf.namelist(), product.level)
            if band not in picked:
                raise ProviderError(f"{product.product_id}: band {band} not in the archive")
            with zf.open(picked[band][0]) as member:
                yield member
