"""Reading the Sentinel-2 SAFE layout (product metadata XML and band file names).

Shared by the local-folder and Google Cloud providers: both see the same relative paths.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from landcoverpy.errors import ProviderError
from landcoverpy.sentinel2 import BAND_RESOLUTION, L1C_BANDS, L2A_BANDS, normalise_tile

_BAND_FILE = re.compile(r"_(B0[1-9]|B1[0-2]|B8A|SCL)(?:_(10|20|60)m)?\.(jp2|tif)$", re.IGNORECASE)
_TILE_IN_NAME = re.compile(r"_T(\d{2}[A-Z]{3})_")


@dataclass(frozen=True)
class SafeMetadata:
    product_id: str
    level: str
    sensing_time: dt.datetime
    platform: str
    processing_baseline: str | None
    cloud_percentage: float
    nodata_percentage: float
    tile: str
    offsets: dict[str, float]


def _text(root: ET.Element, tag: str) -> str | None:
    for el in root.iter():
        if el.tag.split("}")[-1] == tag and el.text:
            return el.text.strip()
    return None


def parse_product_metadata(xml_text: str, source: str) -> SafeMetadata:
    """Parse MTD_MSIL1C.xml / MTD_MSIL2A.xml."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ProviderError(f"{source}: malformed product metadata XML ({exc})") from None
    uri = _text(root, "PRODUCT_URI") or ""
    product_id = uri.removesuffix(".SAFE")
    level_text = _text(root, "PROCESSING_LEVEL") or _text(root, "PRODUCT_TYPE") or product_id
    level = "L2A" if "2A" in level_text else "L1C"
    start = _text(root, "PRODUCT_START_TIME") or _text(root, "DATATAKE_SENSING_START")
    if not product_id or not start:
        raise ProviderError(f"{source}: product metadata lacks PRODUCT_URI or PRODUCT_START_TIME")
    sensing = dt.datetime.fromisoformat(start.replace("Z", "+00:00")).replace(tzinfo=None)
    match = _TILE_IN_NAME.search(product_id + "_")
    if not match:
        raise ProviderError(f"{source}: cannot read the tile id from product name {product_id!r}")
    offsets: dict[str, float] = {}
    band_ids = L1C_BANDS[:]
    for el in root.iter():
        tag = el.tag.split("}")[-1]
        if tag in {"BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"} and el.text is not None:
            idx = int(el.attrib.get("band_id", "-1"))
            if 0 <= idx < len(band_ids):
                offsets[band_ids[idx]] = float(el.text)
    cloud = _text(root, "Cloud_Coverage_Assessment") or _text(root, "CLOUDY_PIXEL_PERCENTAGE") or "0"
    nodata = _text(root, "NODATA_PIXEL_PERCENTAGE") or "0"
    return SafeMetadata(
        product_id=product_id,
        level=level,
        sensing_time=sensing,
        platform=_text(root, "SPACECRAFT_NAME") or product_id[:3],
        processing_baseline=_text(root, "PROCESSING_BASELINE"),
        cloud_percentage=float(cloud),
        nodata_percentage=float(nodata),
        tile=normalise_tile(match.group(1)),
        offsets=offsets,
    )


def pick_band_files(relative_paths: list[str], level: str) -> dict[str, tuple[str, int]]:
    """Band -> (relative path, resolution) from the files of a SAFE's IMG_DATA, at each band's
    native resolution (L2A keeps R10m/R20m/R60m copies; the native one is chosen)."""
    wanted = L2A_BANDS if level == "L2A" else L1C_BANDS
    found: dict[str, tuple[str, int]] = {}
    for path in relative_paths:
        if "IMG_DATA" not in path:
            continue
        match = _BAND_FILE.search(path)
        if not match:
            continue
        band = match.group(1).upper()
        if band not in wanted:
            continue
        res = int(match.group(2)) if match.group(2) else BAND_RESOLUTION[band]
        native = BAND_RESOLUTION[band]
        if band in found and found[band][1] == native:
            continue
        if res == native or band not in found:
            found[band] = (path, res)
    return found
