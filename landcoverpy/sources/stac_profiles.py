"""How each STAC catalog lays out Sentinel-2: catalog profiles and the item readers they share.

A profile says how a catalog names a tile (the property a search filters on), which collection
holds each processing level, how its asset hrefs become readable (Planetary Computer signs them,
CDSE serves ``s3://eodata`` through its own S3 endpoint) and how to recognise it. Band mapping,
offsets, baselines and tiles are read from each item's own metadata by the functions below, which
every profile shares, so an unknown catalog (the ``generic`` profile) works as long as its items
say what they hold.

Radiometric offset of a band, in this order (the first that applies wins):

1. the item says the catalog already applied it (``earthsearch:boa_offset_applied: true``): 0;
2. the asset's scale/offset (STAC 1.1 ``raster:offset`` / ``raster:scale``, on the asset or its
   ``bands``, or ``raster:bands[0].offset`` / ``.scale``): offset / scale, in digital numbers;
3. the processing-baseline rule (-1000 from baseline 04.00 on), the baseline read from
   ``s2:processing_baseline``, ``processing:version`` or the ``_Nxxxx_`` part of the product id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from landcoverpy.errors import ProviderError
from landcoverpy.sentinel2 import BAND_RESOLUTION, QUANTIFICATION_VALUE, baseline_offset, normalise_tile
from landcoverpy.sources.hrefs import S3Location


@dataclass(frozen=True)
class CatalogProfile:
    name: str
    title: str
    collections: Mapping[str, str]  # processing level -> collection id
    tile_property: str | None = None  # item property searched for the tile (None: footprint search)
    tile_prefix: str = ""  # "MGRS-" where the property holds "MGRS-30SUF"
    sign_hrefs: bool = False  # Planetary Computer: SAS-sign blob hrefs before reading
    s3_endpoint: str | None = None  # where s3:// hrefs are read when the item names no storage scheme
    s3_requester_pays: bool = False
    dem_collection: str | None = "cop-dem-glo-30"  # Copernicus GLO-30 DEM COGs
    hosts: tuple[str, ...] = ()  # API hosts that identify the catalog
    landing_ids: tuple[str, ...] = ()  # landing-page ids that identify it

    def tile_value(self, tile: str) -> str:
        return f"{self.tile_prefix}{normalise_tile(tile)}"

    def collection(self, level: str, explicit: str | None = None) -> str:
        if explicit:
            return explicit
        if level not in self.collections:
            offered = ", ".join(f"{lv}: {c}" for lv, c in self.collections.items())
            raise ProviderError(
                f"{self.title} offers no Sentinel-2 {level} collection ({offered}); set "
                f"PRODUCT_LEVEL to one it has, or STAC_COLLECTION to a collection of {level} items"
            )
        return self.collections[level]


PROFILES: dict[str, CatalogProfile] = {
    p.name: p
    for p in (
        CatalogProfile(
            name="earth-search",
            title="Earth Search (Element 84)",
            collections={"L2A": "sentinel-2-c1-l2a", "L1C": "sentinel-2-l1c"},
            tile_property="grid:code",
            tile_prefix="MGRS-",
            s3_requester_pays=True,
            hosts=("earth-search.aws.element84.com",),
            landing_ids=("earth-search-aws",),
        ),
        CatalogProfile(
            name="planetary-computer",
            title="Microsoft Planetary Computer",
            collections={"L2A": "sentinel-2-l2a"},
            tile_property="s2:mgrs_tile",
            sign_hrefs=True,
            hosts=("planetarycomputer.microsoft.com",),
            landing_ids=("microsoft-pc",),
        ),
        CatalogProfile(
            name="cdse",
            title="Copernicus Data Space Ecosystem",
            collections={"L2A": "sentinel-2-l2a", "L1C": "sentinel-2-l1c"},
            tile_property="grid:code",
            tile_prefix="MGRS-",
            s3_endpoint="https://eodata.dataspace.copernicus.eu",
            dem_collection="cop-dem-glo-30-dged-cog",
            hosts=("stac.dataspace.copernicus.eu",),
            landing_ids=("cdse", "cdse-stac"),
        ),
        CatalogProfile(
            name="generic", title="STAC API", collections={"L2A": "sentinel-2-l2a", "L1C": "sentinel-2-l1c"}
        ),
    )
}


def detect_profile(url: str, landing: Mapping[str, Any] | None = None, explicit: str | None = None) -> CatalogProfile:
    """The profile named by ``explicit`` (STAC_PROFILE), else the one whose host or landing-page id
    matches, else ``generic`` (tile found by footprint search, everything else from the items)."""
    if explicit and explicit != "auto":
        if explicit not in PROFILES:
            raise ProviderError(f"unknown STAC_PROFILE {explicit!r}; choose auto or one of {', '.join(PROFILES)}")
        return PROFILES[explicit]
    host = (urlparse(url).hostname or "").lower()
    landing_id = str((landing or {}).get("id", "")).lower()
    for profile in PROFILES.values():
        if host in profile.hosts or (landing_id and landing_id in profile.landing_ids):
            return profile
    return PROFILES["generic"]


# Earth Search asset keys (common names) -> band ids. Band-id keys (B02, SCL) and CDSE's
# resolution-suffixed keys (B02_10m, SCL_20m) are recognised by their own names.
COMMON_NAMES = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
    "scl": "SCL",
}
_KEY_RES = re.compile(r"^(?P<name>[A-Za-z0-9]+?)_(?P<res>\d+)m$")
_BASELINE_IN_ID = re.compile(r"_N(\d{2})(\d{2})_")
_TILE_IN_ID = re.compile(r"_T(\d{2}[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V])_")


@dataclass(frozen=True)
class ItemAsset:
    band: str
    key: str
    href: str
    resolution: int | None
    size: int | None
    meta: Mapping[str, Any]


def _asset_bands(asset: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(asset.get("bands") or asset.get("eo:bands") or [])


def _asset_resolution(asset: Mapping[str, Any], hint: int | None) -> int | None:
    gsd = asset.get("gsd") or (asset.get("raster:bands") or [{}])[0].get("spatial_resolution")
    if gsd:
        return int(round(float(gsd)))
    transform = asset.get("proj:transform")
    if transform:
        return int(round(abs(float(transform[0]))))
    return hint


def asset_band(key: str, asset: Mapping[str, Any]) -> tuple[str, int | None] | None:
    """The Sentinel-2 band an asset holds and the resolution its key names, or None (metadata,
    true colour, AOT...). Duplicate JPEG 2000 assets of a COG (Earth Search ``blue-jp2``) are left
    out."""
    if key.lower().endswith("-jp2"):
        return None
    name, hint = key, None
    match = _KEY_RES.match(key)
    if match:
        name, hint = match.group("name"), int(match.group("res"))
    if name.upper() in BAND_RESOLUTION:
        return name.upper(), hint
    if name.lower() in COMMON_NAMES:
        return COMMON_NAMES[name.lower()], hint
    bands = _asset_bands(asset)
    if len(bands) == 1 and str(bands[0].get("name", "")).upper() in BAND_RESOLUTION:
        return str(bands[0]["name"]).upper(), hint
    return None


def item_assets(item: Mapping[str, Any]) -> dict[str, ItemAsset]:
    """Band id -> the item's asset for it, at the band's native resolution where the item offers
    several (CDSE has B02 at 10, 20 and 60 m)."""
    chosen: dict[str, ItemAsset] = {}
    for key, asset in (item.get("assets") or {}).items():
        found = asset_band(key, asset)
        if found is None or "href" not in asset:
            continue
        band, hint = found
        size = asset.get("file:size")
        candidate = ItemAsset(
            band=band,
            key=key,
            href=str(asset["href"]),
            resolution=_asset_resolution(asset, hint),
            size=size if isinstance(size, int) else None,
            meta=asset,
        )
        native = BAND_RESOLUTION[band]
        held = chosen.get(band)
        if held is None or (held.resolution != native and candidate.resolution == native):
            chosen[band] = candidate
    return chosen


def item_baseline(item: Mapping[str, Any]) -> str | None:
    props = item.get("properties") or {}
    for key in ("s2:processing_baseline", "processing:version"):
        if props.get(key):
            return str(props[key])
    for text in (props.get("s2:product_uri"), item.get("id")):
        match = _BASELINE_IN_ID.search(str(text or ""))
        if match:
            return f"{match.group(1)}.{match.group(2)}"
    return None


def _raster_scale_offset(asset: Mapping[str, Any]) -> tuple[float, float] | None:
    for holder in (asset, *_asset_bands(asset)):
        if "raster:offset" in holder:
            return float(holder.get("raster:scale", 1 / QUANTIFICATION_VALUE)), float(holder["raster:offset"])
    rb = asset.get("raster:bands") or []
    if rb and "offset" in rb[0]:
        return float(rb[0].get("scale", 1 / QUANTIFICATION_VALUE)), float(rb[0]["offset"])
    return None


def band_offset(item: Mapping[str, Any], asset: Mapping[str, Any]) -> float:
    """Additive DN offset of one reflectance band, in the order documented in the module."""
    props = item.get("properties") or {}
    if props.get("earthsearch:boa_offset_applied") is True:
        return 0.0
    scale_offset = _raster_scale_offset(asset)
    if scale_offset is not None:
        scale, offset = scale_offset
        if scale <= 0:
            raise ProviderError(f"STAC item {item.get('id')}: raster scale {scale} is not positive")
        return float(round(offset / scale))
    return baseline_offset(item_baseline(item))


def item_tile(item: Mapping[str, Any]) -> str | None:
    """The Sentinel-2 tile an item belongs to, from whichever property its catalog uses."""
    props = item.get("properties") or {}
    code = str(props.get("grid:code", ""))
    if code.startswith("MGRS-"):
        return normalise_tile(code[5:])
    if props.get("s2:mgrs_tile"):
        return normalise_tile(str(props["s2:mgrs_tile"]))
    for prefix in ("mgrs", "sentinel"):
        zone, band, square = (
            props.get(f"{prefix}:utm_zone"),
            props.get(f"{prefix}:latitude_band"),
            props.get(f"{prefix}:grid_square"),
        )
        if zone is not None and band and square:
            return normalise_tile(f"{int(zone):02d}{band}{square}")
    for text in (props.get("s2:product_uri"), item.get("id")):
        match = _TILE_IN_ID.search(str(text or ""))
        if match:
            return normalise_tile(match.group(1))
    return None


def item_level(item: Mapping[str, Any], collection: str) -> str:
    """``L1C`` or ``L2A``: from the product type, else the product id, else the collection name."""
    props = item.get("properties") or {}
    ptype = str(props.get("s2:product_type") or props.get("product:type") or "").upper()
    if ptype.endswith("1C"):
        return "L1C"
    if ptype.endswith("2A"):
        return "L2A"
    text = f"{props.get('s2:product_uri', '')} {item.get('id', '')}".upper()
    if "MSIL1C" in text or text.rstrip().endswith("_L1C"):
        return "L1C"
    if "MSIL2A" in text or text.rstrip().endswith("_L2A"):
        return "L2A"
    return "L1C" if "l1c" in collection.lower() else "L2A"


def item_nodata_percentage(item: Mapping[str, Any]) -> float:
    props = item.get("properties") or {}
    if "s2:nodata_pixel_percentage" in props:
        return float(props["s2:nodata_pixel_percentage"])
    stats = props.get("statistics")
    if isinstance(stats, Mapping) and "nodata" in stats:
        return float(stats["nodata"])
    return 0.0


def item_product_id(item: Mapping[str, Any]) -> str:
    props = item.get("properties") or {}
    return str(props.get("s2:product_uri") or item["id"]).removesuffix(".SAFE")


def s3_location(
    item: Mapping[str, Any], asset: Mapping[str, Any], profile: CatalogProfile, override: str | None
) -> S3Location:
    """The endpoint of an ``s3://`` asset: STAC_S3_ENDPOINT when set, else the storage scheme the
    asset refers to (STAC storage extension: ``storage:refs`` -> ``storage:schemes[].platform``),
    else the profile's (AWS when it has none)."""
    props = item.get("properties") or {}
    schemes = props.get("storage:schemes") or {}
    refs = asset.get("storage:refs") or []
    scheme = next((schemes[r] for r in refs if r in schemes), None)
    requester_pays = bool(props.get("storage:requester_pays", profile.s3_requester_pays))
    if scheme is not None:
        requester_pays = bool(scheme.get("requester_pays", requester_pays))
    endpoint = (
        override or (str(scheme["platform"]) if scheme and scheme.get("platform") else None) or profile.s3_endpoint
    )
    return S3Location(endpoint=endpoint, requester_pays=requester_pays)
