"""DEM sources: Copernicus GLO-30 COGs from a STAC catalog (``DEM_SOURCE=glo30``), or ASTER GDEM v3
(1 x 1 degree tiles ``ASTGTMV003_NxxWyyy_dem.tif``) from a local folder, an HTTP(S)/S3 mirror, or
NASA Earthdata (bearer token; zipped tiles are unpacked on the fly).

Both name the tiles covering a lon/lat box (``tiles_for_bounds``) and stream one
(``open_tile``); the DEM stage stores them and mosaics them onto each Sentinel-2 grid."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import requests

from landcoverpy.config import Settings
from landcoverpy.errors import ProviderError, TransientError
from landcoverpy.faults import is_transient_status
from landcoverpy.sources.hrefs import AssetReader, S3Location
from landcoverpy.sources.registry import asset_reader
from landcoverpy.sources.stac import StacCatalog
from landcoverpy.sources.stac_profiles import s3_location

log = logging.getLogger(__name__)

EARTHDATA_URL = "https://e4ftl01.cr.usgs.gov/ASTT/ASTGTM.003/2000.03.01"


def aster_tile_name(lat: int, lon: int) -> str:
    """The tile whose south-west corner is (lat, lon): ``ASTGTMV003_N37W076``."""
    return f"ASTGTMV003_{'N' if lat >= 0 else 'S'}{abs(lat):02d}{'E' if lon >= 0 else 'W'}{abs(lon):03d}"


def aster_tiles_for_bounds(west: float, south: float, east: float, north: float) -> list[str]:
    names = []
    for lat in range(math.floor(south), math.ceil(north)):
        for lon in range(math.floor(west), math.ceil(east)):
            names.append(aster_tile_name(lat, lon))
    return names


class DEMSource:
    """Where ASTER tiles come from: ``source`` is a folder path, or an http(s) base URL (with an
    Earthdata token when needed). Tiles are ``{name}_dem.tif`` or ``{name}.zip``."""

    settings_hint = "DEM_SOURCE"

    kind = "aster"

    def __init__(self, source: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.source, self.token, self.timeout = source, token, timeout

    def describe(self) -> str:
        return f"ASTER GDEM from {self.source}"

    def tiles_for_bounds(self, west: float, south: float, east: float, north: float) -> list[str]:
        return aster_tiles_for_bounds(west, south, east, north)

    @contextlib.contextmanager
    def open_tile(self, name: str) -> Iterator[IO[bytes] | None]:
        """The tile's GeoTIFF bytes as a stream, or None when the source has no such tile (open
        ocean has no ASTER tile)."""
        if self.source.startswith(("http://", "https://")):
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            for candidate in (f"{name}_dem.tif", f"{name}.zip"):
                resp = requests.get(
                    f"{self.source.rstrip('/')}/{candidate}", headers=headers, stream=True, timeout=self.timeout
                )
                if resp.status_code == 404:
                    resp.close()
                    continue
                if resp.status_code in (401, 403):
                    resp.close()
                    raise ProviderError(
                        f"{self.describe()}: {candidate} refused (HTTP {resp.status_code}); check EARTHDATA_TOKEN"
                    )
                if is_transient_status(resp.status_code):
                    resp.close()
                    raise TransientError(f"{self.describe()}: {candidate} answered HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    resp.close()
                    raise ProviderError(f"{self.describe()}: {candidate} answered HTTP {resp.status_code}")
                try:
                    if candidate.endswith(".zip"):
                        yield _dem_from_zip(io.BytesIO(resp.content), name)
                    else:
                        resp.raw.decode_content = True
                        yield resp.raw
                finally:
                    resp.close()
                return
            yield None
            return
        folder = Path(self.source)
        if not folder.is_dir():
            raise ProviderError(f"DEM source folder {folder} does not exist; set DEM_SOURCE")
        tif, zipped = folder / f"{name}_dem.tif", folder / f"{name}.zip"
        if tif.is_file():
            with open(tif, "rb") as fh:
                yield fh
        elif zipped.is_file():
            with open(zipped, "rb") as fh:
                yield _dem_from_zip(fh, name)
        else:
            yield None


def _dem_from_zip(stream: IO[bytes], name: str) -> IO[bytes]:
    with zipfile.ZipFile(stream) as zf:
        member = next((n for n in zf.namelist() if n.endswith(f"{name}_dem.tif")), None)
        if member is None:
            raise ProviderError(f"{name}.zip holds no {name}_dem.tif")
        return io.BytesIO(zf.read(member))


class GLO30Source:
    """Copernicus DEM GLO-30 (1 arc-second COGs, one per degree) from a STAC catalog: the
    profile's DEM collection (``cop-dem-glo-30`` on Earth Search and Planetary Computer) searched
    by footprint; each item's data asset is read like any STAC asset (https, signed on Planetary
    Computer, or ``s3://`` anonymously from AWS's public bucket)."""

    settings_hint = "DEM_SOURCE and STAC_API_URL"

    kind = "glo30"

    def __init__(
        self,
        url: str,
        profile: str = "auto",
        collection: str | None = None,
        reader: AssetReader | None = None,
        timeout: float = 30.0,
        s3_endpoint: str | None = None,
    ) -> None:

        self.catalog = StacCatalog(url, profile, timeout)
        self.collection, self.s3_endpoint = collection, s3_endpoint
        self.reader = reader or AssetReader(timeout)
        self._assets: dict[str, tuple[str, S3Location, bool]] = {}

    def _collection(self) -> str:
        _, profile = self.catalog.open()
        collection = self.collection or profile.dem_collection
        if not collection:
            raise ProviderError(
                f"{profile.title} has no Copernicus GLO-30 collection known to landcoverpy; "
                "set DEM_SOURCE=glo30+URL of a catalog that has one (Earth Search, Planetary Computer)"
            )
        return collection

    def describe(self) -> str:
        profile = self.catalog.profile
        collection = self.collection or (profile.dem_collection if profile else None) or "of GLO-30"
        return f"Copernicus GLO-30 DEM from STAC API {self.catalog.url} collection {collection}"

    def tiles_for_bounds(self, west: float, south: float, east: float, north: float) -> list[str]:

        collection = self._collection()
        _, profile = self.catalog.open()
        items = self.catalog.search(self.describe(), collections=[collection], bbox=[west, south, east, north])
        for item in items:
            key, asset = _dem_asset(item)
            if asset is None:
                log.warning("GLO-30 item %s has no elevation asset: skipped", item.get("id"))
                continue
            where = s3_location(item, asset, profile, self.s3_endpoint)
            self._assets[str(item["id"])] = (str(asset["href"]), where, profile.sign_hrefs)
        return sorted(str(i["id"]) for i in items if str(i["id"]) in self._assets)

    @contextlib.contextmanager
    def open_tile(self, name: str) -> Iterator[IO[bytes] | None]:
        if name not in self._assets:
            yield None
            return
        href, where, sign = self._assets[name]
        with self.reader.open(href, where, sign=sign) as stream:
            yield stream


def _dem_asset(item: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The elevation asset: ``data`` (Earth Search, Planetary Computer), else the one data-role
    GeoTIFF."""
    assets = item.get("assets") or {}
    if "data" in assets:
        return "data", assets["data"]
    tiffs = [
        (k, a)
        for k, a in assets.items()
        if "data" in (a.get("roles") or []) and "tiff" in str(a.get("type", "")).lower()
    ]
    return tiffs[0] if len(tiffs) == 1 else (None, None)


def make_dem_source(settings: Settings, where: str | None = None) -> DEMSource | GLO30Source | None:
    """The DEM source ``where`` (default DEM_SOURCE) names: ``glo30`` (the STAC catalog of
    STAC_API_URL), ``glo30+URL`` (another STAC catalog), ``none``, or a folder / http(s) URL of
    ASTER GDEM tiles."""

    where = where or settings.DEM_SOURCE
    if not where or where == "none":
        return None
    if where == "glo30" or where.startswith("glo30+"):
        url = where[len("glo30+") :] if where.startswith("glo30+") else settings.STAC_API_URL
        return GLO30Source(
            url,
            profile=settings.STAC_PROFILE if where == "glo30" else "auto",
            reader=asset_reader(settings),
            timeout=max(settings.CONNECT_TIMEOUT, 30),
            s3_endpoint=settings.STAC_S3_ENDPOINT,
        )
    token = settings.EARTHDATA_TOKEN.get_secret_value() if settings.EARTHDATA_TOKEN else None
    return DEMSource(where, token)
