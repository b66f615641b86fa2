"""STAC API provider (Earth Search ``sentinel-2-l2a`` by default; Planetary Computer or any
STAC API with the item-search conformance class), with pystac-client. Assets are COGs fetched
over HTTP(S) as streams."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import IO, Any

from landcoverpy.errors import ProviderError, ProviderUnavailableError, TransientError
from landcoverpy.retry import is_transient_status
from landcoverpy.sentinel2 import BAND_RESOLUTION, L2A_BANDS, baseline_offset, normalise_tile
from landcoverpy.sources.base import BandAsset, ProductCandidate, Provider, in_range

log = logging.getLogger(__name__)

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
# Earth Search v1 asset keys (common names) -> Sentinel-2 band ids; band-id keys work as well.
ASSET_KEYS = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "swir16": "B11", "swir22": "B12", "scl": "SCL",
}


def item_tile(props: dict[str, Any]) -> str | None:
    if "grid:code" in props and str(props["grid:code"]).startswith("MGRS-"):
        return normalise_tile(str(props["grid:code"])[5:])
    if "s2:mgrs_tile" in props:
        return normalise_tile(str(props["s2:mgrs_tile"]))
    if {"mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"} <= set(props):
        return normalise_tile(f"{int(props['mgrs:utm_zone']):02d}{props['mgrs:latitude_band']}{props['mgrs:grid_square']}")
    return None


class STACProvider(Provider):
    name = "stac"

    def __init__(self, url: str = EARTH_SEARCH, collection: str = "sentinel-2-l2a", timeout: float = 30.0,
                 sign_planetary_computer: bool = False) -> None:
        self.url, self.collection, self.timeout = url.rstrip("/"), collection, timeout
        self.sign_planetary_computer = sign_planetary_computer

    def describe(self) -> str:
        return f"STAC API {self.url} collection {self.collection}"

    def search(self, tile: str, start: dt.date, end: dt.date) -> list[ProductCandidate]:
        from pystac_client import Client
        from pystac_client.exceptions import APIError

        tile = normalise_tile(tile)
        try:
            client = Client.open(self.url, timeout=self.timeout)
            search = client.search(collections=[self.collection], datetime=f"{start.isoformat()}/{end.isoformat()}",
                                   query={"grid:code": {"eq": f"MGRS-{tile}"}}, max_items=500)
            items = list(search.items_as_dicts())
        except APIError as exc:
            import requests

            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, (requests.ConnectionError, requests.Timeout)) or "Failed to establish" in str(exc):
                raise ProviderUnavailableError(f"{self.describe()} is unreachable ({type(cause).__name__}); check STAC_API_URL") from None
            if is_transient_status(getattr(exc, "status_code", None)):
                raise TransientError(f"{self.describe()}: search answered HTTP {exc.status_code}") from None
            raise ProviderError(f"{self.describe()}: search failed ({exc})") from None
        except OSError as exc:
            raise ProviderUnavailableError(f"{self.describe()} is unreachable ({type(exc).__name__}); check STAC_API_URL") from None
        out = []
        for item in items:
            props = item.get("properties", {})
            if item_tile(props) != tile:
                continue
            cand = self._candidate(item, tile)
            if cand is not None and in_range(cand.sensing_time, start, end):
                out.append(cand)
        return out

    def _candidate(self, item: dict[str, Any], tile: str) -> ProductCandidate | None:
        props = item["properties"]
        assets = {}
        for key, asset in item.get("assets", {}).items():
            band = ASSET_KEYS.get(key.lower()) or (key.upper() if key.upper() in BAND_RESOLUTION else None)
            if band is None or (key.lower().endswith("-jp2")):
                continue
            gsd = asset.get("gsd") or (asset.get("raster:bands") or [{}])[0].get("spatial_resolution")
            assets[band] = BandAsset(band=band, href=asset["href"], resolution=int(gsd) if gsd else BAND_RESOLUTION[band],
                                     size=(asset.get("file:size") if isinstance(asset.get("file:size"), int) else None))
        if not {b for b in L2A_BANDS} <= set(assets):
            log.warning("STAC item %s lacks band(s) %s: skipped", item.get("id"),
                        ", ".join(sorted(set(L2A_BANDS) - set(assets))))
            return None
        when = dt.datetime.fromisoformat(str(props["datetime"]).replace("Z", "+00:00")).replace(tzinfo=None)
        baseline = props.get("s2:processing_baseline")
        applied = bool(props.get("earthsearch:boa_offset_applied", False))
        offset = 0.0 if applied else baseline_offset(baseline)
        return ProductCandidate(
            product_id=str(props.get("s2:product_uri", item["id"])).removesuffix(".SAFE"),
            tile=tile, sensing_time=when, platform=str(props.get("platform", "sentinel-2")), level="L2A",
            processing_baseline=baseline, cloud_percentage=float(props.get("eo:cloud_cover", 0.0)),
            nodata_percentage=float(props.get("s2:nodata_pixel_percentage", 0.0)), provider=self.name, assets=assets,
            extra={"offsets": {b: offset for b in assets if b != "SCL"}, "stac_item": item["id"]},
        )

    def _href(self, href: str) -> str:
        if self.sign_planetary_computer:
            try:
                import planetary_computer
            except ImportError:
                raise ProviderError("signing Planetary Computer assets needs `pip install planetary-computer`") from None
            return str(planetary_computer.sign(href))
        return href

    @contextlib.contextmanager
    def open_asset(self, product: ProductCandidate, asset: BandAsset) -> Iterator[IO[bytes]]:
        import requests

        resp = requests.get(self._href(asset.href), stream=True, timeout=self.timeout)
        if resp.status_code in (401, 403):
            resp.close()
            raise ProviderError(f"{asset.href}: access refused (HTTP {resp.status_code})")
        if is_transient_status(resp.status_code):
            resp.close()
            raise TransientError(f"{asset.href}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            resp.close()
            raise ProviderError(f"{asset.href}: HTTP {resp.status_code}")
        resp.raw.decode_content = True
        try:
            yield _NetworkStream(resp.raw, asset.href)
        finally:
            resp.close()


class _NetworkStream:
    """A response body whose transport failures (connection dropped, short read) surface as
    ConnectionError, which the acquisition retries with backoff."""

    def __init__(self, raw: Any, href: str) -> None:
        self.raw, self.href = raw, href

    def read(self, size: int = -1) -> bytes:
        import urllib3

        try:
            return self.raw.read(size)  # type: ignore[no-any-return]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ConnectionError(f"{self.href}: connection broken ({type(exc).__name__})") from exc

    def readable(self) -> bool:
        return True
