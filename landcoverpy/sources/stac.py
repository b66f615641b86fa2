"""STAC API provider: Earth Search, Planetary Computer, Copernicus Data Space and any STAC API with
item search, through catalog profiles (:mod:`landcoverpy.sources.stac_profiles`).

A search asks for the tile the way the catalog names it (the query or filter extension, whichever
the API conforms to), or by the tile's footprint where the profile names no tile property; every
item found is checked client-side for its tile. Bands, offsets and baselines come from each item's
metadata. Assets are streamed: ``http(s)`` hrefs with requests (signed first on Planetary
Computer), ``s3://`` hrefs with boto3 from the asset's storage endpoint (CDSE's ``eodata``, AWS for
Earth Search L1C) with STAC_S3_ACCESS_KEY / STAC_S3_SECRET_KEY.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import IO, Any

import requests
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError

from landcoverpy.errors import ProviderError, ProviderUnavailableError, TransientError
from landcoverpy.faults import is_transient_status
from landcoverpy.sentinel2 import L1C_BANDS, L2A_BANDS, normalise_tile, tile_bbox_lonlat
from landcoverpy.sources.base import BandAsset, ProductCandidate, Provider, in_range
from landcoverpy.sources.hrefs import AssetReader, S3Location
from landcoverpy.sources.stac_profiles import (
    CatalogProfile,
    band_offset,
    detect_profile,
    item_assets,
    item_baseline,
    item_level,
    item_nodata_percentage,
    item_product_id,
    item_tile,
    s3_location,
)

log = logging.getLogger(__name__)

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
PAGE_SIZE = 100


class StacCatalog:
    """A STAC API and its profile, opened on first use; searches whose failures are our errors
    (unreachable and HTTP 429/5xx are retried by the caller, anything else is a ProviderError)."""

    def __init__(self, url: str, profile: str = "auto", timeout: float = 30.0) -> None:
        self.url, self.profile_name, self.timeout = url.rstrip("/"), profile, timeout
        self._client: Any = None
        self._profile: CatalogProfile | None = None

    def __getstate__(self) -> dict[str, Any]:  # the API client stays in the process that made it
        return self.__dict__ | {"_client": None}

    def open(self) -> tuple[Any, CatalogProfile]:

        if self._client is None:
            with self._errors(f"STAC API {self.url}"):
                self._client = Client.open(self.url, timeout=self.timeout)
            self._profile = detect_profile(self.url, self._client.to_dict(include_self_link=False), self.profile_name)
            log.info("%s: catalog profile %s", self.url, self._profile.name)
        assert self._profile is not None
        return self._client, self._profile

    @property
    def profile(self) -> CatalogProfile | None:
        """The profile, once the catalog has been opened."""
        return self._profile

    def search(self, what: str, **params: Any) -> list[dict[str, Any]]:
        """Every item the search finds, following the pages; ``what`` names the search in errors.
        POST where the API advertises it, else GET (some APIs offer only one)."""
        client, _ = self.open()
        methods = {str(link.extra_fields.get("method") or "GET").upper() for link in client.get_links("search")}
        method = "POST" if "POST" in methods or not methods else "GET"
        with self._errors(what):
            return list(client.search(method=method, limit=PAGE_SIZE, **params).items_as_dicts())

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:

        try:
            yield
        except APIError as exc:
            self._client = None
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, (requests.ConnectionError, requests.Timeout)) or "Failed to establish" in str(exc):
                raise self._unreachable(what, cause or exc) from None
            if is_transient_status(getattr(exc, "status_code", None)):
                raise TransientError(f"{what}: search answered HTTP {exc.status_code}") from None
            raise ProviderError(f"{what}: search failed ({exc})") from None
        except OSError as exc:
            self._client = None
            raise self._unreachable(what, exc) from None

    @staticmethod
    def _unreachable(what: str, exc: BaseException) -> ProviderUnavailableError:
        return ProviderUnavailableError(f"{what} is unreachable ({type(exc).__name__}); check STAC_API_URL")

    def tile_filter(self, tile: str) -> dict[str, Any]:
        """Search parameters for one tile: its property with the query or CQL2 filter extension
        (whichever the API conforms to), else its footprint."""

        client, profile = self.open()
        if profile.tile_property:
            value = profile.tile_value(tile)
            if client.conforms_to(ConformanceClasses.QUERY):
                return {"query": {profile.tile_property: {"eq": value}}}
            if client.conforms_to(ConformanceClasses.FILTER):
                return {
                    "filter": {"op": "=", "args": [{"property": profile.tile_property}, value]},
                    "filter_lang": "cql2-json",
                }
        return {"bbox": list(tile_bbox_lonlat(tile))}


class STACProvider(Provider):
    settings_hint = "STAC_API_URL"
    name = "stac"

    def __init__(
        self,
        url: str = EARTH_SEARCH,
        collection: str | None = None,
        level: str = "L2A",
        profile: str = "auto",
        timeout: float = 30.0,
        s3_endpoint: str | None = None,
        reader: AssetReader | None = None,
    ) -> None:
        self.catalog = StacCatalog(url, profile, timeout)
        self.url, self.collection, self.level, self.timeout = self.catalog.url, collection, level, timeout
        self.s3_endpoint = s3_endpoint
        self.reader = reader or AssetReader(timeout)

    def describe(self) -> str:
        profile = self.catalog.profile
        what = self.collection or (profile.collection(self.level) if profile else self.level)
        return f"STAC API {self.url} collection {what}"

    def profile(self) -> CatalogProfile:
        return self.catalog.open()[1]

    def search(self, tile: str, start: dt.date, end: dt.date) -> list[ProductCandidate]:
        tile = normalise_tile(tile)
        _, profile = self.catalog.open()
        collection = profile.collection(self.level, self.collection)
        items = self.catalog.search(
            self.describe(),
            collections=[collection],
            datetime=f"{start.isoformat()}/{end.isoformat()}",
            **self.catalog.tile_filter(tile),
        )
        return self._candidates(items, tile, collection, profile, start, end)

    def _candidates(
        self,
        items: list[dict[str, Any]],
        tile: str,
        collection: str,
        profile: CatalogProfile,
        start: dt.date,
        end: dt.date,
    ) -> list[ProductCandidate]:
        out, lacking = [], {}
        for item in items:
            if item_tile(item) != tile:
                continue
            cand, missing = self._candidate(item, tile, collection, profile)
            if cand is None:
                lacking[str(item.get("id"))] = missing
            elif in_range(cand.sensing_time, start, end):
                out.append(cand)
        if lacking and not out:
            first, missing = next(iter(lacking.items()))
            raise ProviderError(
                f"{self.describe()}: {len(lacking)} item(s) of tile {tile}, none with every band a product needs "
                f"({first} lacks {', '.join(missing)}); choose a collection of Sentinel-2 L2A or L1C items "
                f"(STAC_COLLECTION) or the catalog's profile (STAC_PROFILE)"
            )
        for iid, missing in lacking.items():
            log.warning("STAC item %s lacks band(s) %s: skipped", iid, ", ".join(missing))
        return out

    def _candidate(
        self, item: dict[str, Any], tile: str, collection: str, profile: CatalogProfile
    ) -> tuple[ProductCandidate | None, list[str]]:
        props = item.get("properties") or {}
        level = item_level(item, collection)
        found = item_assets(item)
        needed = L2A_BANDS if level == "L2A" else L1C_BANDS
        missing = [b for b in needed if b not in found]
        if missing:
            return None, missing
        assets, offsets, s3 = {}, {}, {}
        for band in needed:
            asset = found[band]
            assets[band] = BandAsset(band=band, href=asset.href, resolution=asset.resolution, size=asset.size)
            if band != "SCL":
                offsets[band] = band_offset(item, asset.meta)
            if asset.href.startswith("s3://"):
                where = s3_location(item, asset.meta, profile, self.s3_endpoint)
                s3[band] = {"endpoint": where.endpoint, "requester_pays": where.requester_pays}
        when = dt.datetime.fromisoformat(str(props["datetime"]).replace("Z", "+00:00")).replace(tzinfo=None)
        return ProductCandidate(
            product_id=item_product_id(item),
            tile=tile,
            sensing_time=when,
            platform=str(props.get("platform", "sentinel-2")),
            level=level,
            processing_baseline=item_baseline(item),
            cloud_percentage=float(props.get("eo:cloud_cover", 0.0)),
            nodata_percentage=item_nodata_percentage(item),
            provider=self.name,
            assets=assets,
            extra={
                "offsets": offsets,
                "stac_item": item.get("id"),
                "stac_collection": collection,
                "stac_profile": profile.name,
                "sign_hrefs": profile.sign_hrefs,
                "s3": s3,
            },
        ), []

    # -- reading assets ------------------------------------------------------------------------

    @contextlib.contextmanager
    def open_asset(self, product: ProductCandidate, asset: BandAsset) -> Iterator[IO[bytes]]:
        where = (product.extra.get("s3") or {}).get(asset.band) or {}
        s3 = S3Location(where.get("endpoint", self.s3_endpoint), bool(where.get("requester_pays", False)))
        with self.reader.open(asset.href, s3, sign=bool(product.extra.get("sign_hrefs"))) as stream:
            yield stream

    def open_range(self, product: ProductCandidate, asset: BandAsset) -> Any:
        where = (product.extra.get("s3") or {}).get(asset.band) or {}
        s3 = S3Location(where.get("endpoint", self.s3_endpoint), bool(where.get("requester_pays", False)))
        return self.reader.range_file(asset.href, s3, sign=bool(product.extra.get("sign_hrefs")))
