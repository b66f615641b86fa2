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

from landcoverpy.errors import AuthenticationError, ProviderError, ProviderUnavailableError, TransientError
from landcoverpy.retry import is_transient_status
from landcoverpy.sentinel2 import L1C_BANDS, L2A_BANDS, normalise_tile, tile_bbox_lonlat
from landcoverpy.sources.base import BandAsset, ProductCandidate, Provider, in_range
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


class STACProvider(Provider):
    name = "stac"

    def __init__(self, url: str = EARTH_SEARCH, collection: str | None = None, level: str = "L2A",
                 profile: str = "auto", timeout: float = 30.0, s3_endpoint: str | None = None,
                 s3_access_key: str | None = None, s3_secret_key: str | None = None) -> None:
        self.url, self.collection, self.level, self.timeout = url.rstrip("/"), collection, level, timeout
        self.profile_name = profile
        self.s3_endpoint, self.s3_access_key, self.s3_secret_key = s3_endpoint, s3_access_key, s3_secret_key
        self._client: Any = None
        self._profile: CatalogProfile | None = None
        self._s3: dict[tuple[str | None, bool], Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # clients stay in the process that made them
        return self.__dict__ | {"_client": None, "_s3": {}}

    def describe(self) -> str:
        what = self.collection or (self._profile.collection(self.level) if self._profile else self.level)
        return f"STAC API {self.url} collection {what}"

    # -- search ------------------------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> ProviderUnavailableError:
        return ProviderUnavailableError(f"{self.describe()} is unreachable ({type(exc).__name__}); check STAC_API_URL")

    def _open(self) -> tuple[Any, CatalogProfile]:
        from pystac_client import Client

        if self._client is None:
            self._client = Client.open(self.url, timeout=self.timeout)
            self._profile = detect_profile(self.url, self._client.to_dict(include_self_link=False),
                                           self.profile_name)
            log.info("%s: catalog profile %s", self.url, self._profile.name)
        assert self._profile is not None
        return self._client, self._profile

    def profile(self) -> CatalogProfile:
        return self._open()[1]

    def _tile_filter(self, client: Any, profile: CatalogProfile, tile: str) -> dict[str, Any]:
        from pystac_client.conformance import ConformanceClasses

        if profile.tile_property:
            value = profile.tile_value(tile)
            if client.conforms_to(ConformanceClasses.QUERY):
                return {"query": {profile.tile_property: {"eq": value}}}
            if client.conforms_to(ConformanceClasses.FILTER):
                return {"filter": {"op": "=", "args": [{"property": profile.tile_property}, value]},
                        "filter_lang": "cql2-json"}
        return {"bbox": list(tile_bbox_lonlat(tile))}

    def search(self, tile: str, start: dt.date, end: dt.date) -> list[ProductCandidate]:
        import requests
        from pystac_client.exceptions import APIError

        tile = normalise_tile(tile)
        try:
            client, profile = self._open()
            collection = profile.collection(self.level, self.collection)
            search = client.search(collections=[collection], datetime=f"{start.isoformat()}/{end.isoformat()}",
                                   limit=PAGE_SIZE, **self._tile_filter(client, profile, tile))
            items = list(search.items_as_dicts())
        except APIError as exc:
            self._client = None
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, (requests.ConnectionError, requests.Timeout)) or "Failed to establish" in str(exc):
                raise self._unreachable(cause or exc) from None
            if is_transient_status(getattr(exc, "status_code", None)):
                raise TransientError(f"{self.describe()}: search answered HTTP {exc.status_code}") from None
            raise ProviderError(f"{self.describe()}: search failed ({exc})") from None
        except OSError as exc:
            self._client = None
            raise self._unreachable(exc) from None
        return self._candidates(items, tile, collection, profile, start, end)

    def _candidates(self, items: list[dict[str, Any]], tile: str, collection: str, profile: CatalogProfile,
                    start: dt.date, end: dt.date) -> list[ProductCandidate]:
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
                f"(STAC_COLLECTION) or the catalog's profile (STAC_PROFILE)")
        for iid, missing in lacking.items():
            log.warning("STAC item %s lacks band(s) %s: skipped", iid, ", ".join(missing))
        return out

    def _candidate(self, item: dict[str, Any], tile: str, collection: str,
                   profile: CatalogProfile) -> tuple[ProductCandidate | None, list[str]]:
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
            product_id=item_product_id(item), tile=tile, sensing_time=when,
            platform=str(props.get("platform", "sentinel-2")), level=level, processing_baseline=item_baseline(item),
            cloud_percentage=float(props.get("eo:cloud_cover", 0.0)), nodata_percentage=item_nodata_percentage(item),
            provider=self.name, assets=assets,
            extra={"offsets": offsets, "stac_item": item.get("id"), "stac_collection": collection,
                   "stac_profile": profile.name, "sign_hrefs": profile.sign_hrefs, "s3": s3},
        ), []

    # -- reading assets ------------------------------------------------------------------------

    @contextlib.contextmanager
    def open_asset(self, product: ProductCandidate, asset: BandAsset) -> Iterator[IO[bytes]]:
        if asset.href.startswith("s3://"):
            where = (product.extra.get("s3") or {}).get(asset.band) or {}
            with self._open_s3(asset.href, where.get("endpoint", self.s3_endpoint),
                               bool(where.get("requester_pays", False))) as stream:
                yield stream
            return
        href = sign_href(asset.href) if product.extra.get("sign_hrefs") else asset.href
        with self._open_http(href, asset.href) as stream:
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
            yield _NetworkStream(resp.raw, shown)  # type: ignore[misc]
        finally:
            resp.close()

    def _s3_client(self, endpoint: str | None, requester_pays: bool) -> Any:
        import boto3
        from botocore.config import Config

        key = (endpoint, requester_pays)
        if key not in self._s3:
            creds = {}
            if self.s3_access_key and self.s3_secret_key:
                creds = {"aws_access_key_id": self.s3_access_key, "aws_secret_access_key": self.s3_secret_key}
            config = Config(connect_timeout=self.timeout, read_timeout=self.timeout,
                            retries={"mode": "standard", "max_attempts": 3},
                            s3={"addressing_style": "path"} if endpoint else None)
            self._s3[key] = boto3.client("s3", endpoint_url=endpoint, config=config,
                                         region_name="us-east-1" if endpoint else None, **creds)
        return self._s3[key]

    @contextlib.contextmanager
    def _open_s3(self, href: str, endpoint: str | None, requester_pays: bool) -> Iterator[IO[bytes]]:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

        bucket, _, key = href[len("s3://"):].partition("/")
        where = endpoint or "AWS S3"
        extra = {"RequestPayer": "requester"} if requester_pays else {}
        try:
            body = self._s3_client(endpoint, requester_pays).get_object(Bucket=bucket, Key=key, **extra)["Body"]
        except NoCredentialsError:
            raise AuthenticationError(f"{href}: {where} needs S3 keys; set STAC_S3_ACCESS_KEY and STAC_S3_SECRET_KEY "
                                      "(for CDSE, keys made in the Copernicus Data Space dashboard)") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise AuthenticationError(f"{href}: {where} refused the S3 keys ({code}); check STAC_S3_ACCESS_KEY "
                                          "and STAC_S3_SECRET_KEY") from None
            if is_transient_status(status) or code in ("SlowDown", "RequestTimeout"):
                raise TransientError(f"{href}: {where} answered {code or status}") from None
            raise ProviderError(f"{href}: {where} answered {code or status} ({exc})") from None
        except EndpointConnectionError as exc:
            raise ConnectionError(f"{href}: cannot reach {where} ({exc}); check STAC_S3_ENDPOINT") from None
        except BotoCoreError as exc:
            raise ConnectionError(f"{href}: {where}: {exc}") from None
        try:
            yield _NetworkStream(body, href)  # type: ignore[misc]
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


class _NetworkStream:
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
