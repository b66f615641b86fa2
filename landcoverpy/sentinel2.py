"""Sentinel-2 facts: bands, native resolutions, tile ids, processing-baseline radiometry."""

from __future__ import annotations

import re

import mgrs
import numpy as np
from pyproj import Transformer

from landcoverpy.errors import InputValidationError
from landcoverpy.raster.pixelkernels import masked_reflectance_into

BAND_RESOLUTION: dict[str, int] = {
    "B01": 60,
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B08": 10,
    "B8A": 20,
    "B09": 60,
    "B10": 60,
    "B11": 20,
    "B12": 20,
    "SCL": 20,
}
L1C_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
L2A_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12", "SCL"]
# Reflectance bands that go into composites and features (B10 cirrus is L1C-only, B01/B09 are
# atmospheric bands; both excluded from features as in common practice).
COMPOSITE_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
REFERENCE_BAND = "B02"
QUANTIFICATION_VALUE = 10000.0
BASELINE_OFFSET = -1000.0  # BOA_ADD_OFFSET / RADIO_ADD_OFFSET from processing baseline 04.00 on
TILE_SIZE_M = 109_800  # a Sentinel-2 tile is 10980 px of 10 m

_TILE_RE = re.compile(r"^(?:T)?(0[1-9]|[1-5][0-9]|60)([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")


def normalise_tile(tile: str) -> str:
    """``"T30SUF"`` or ``"30suf"`` -> ``"30SUF"``; anything that is not an MGRS 100 km square id
    raises InputValidationError."""
    text = str(tile).strip().upper()
    match = _TILE_RE.match(text)
    if not match:
        raise InputValidationError(
            f"tile id {tile!r} is not a Sentinel-2 MGRS tile (expected like 30SUF: zone 01-60, "
            "latitude band C-X, two 100 km square letters)"
        )
    return "".join(match.groups())


def tile_of(lat: float, lon: float) -> str:
    """The MGRS 100 km square (Sentinel-2 tile) containing a point, with the ``mgrs`` library."""

    if not -80.0 <= lat < 84.0:
        raise InputValidationError(
            f"point ({lat:.5f}, {lon:.5f}) is outside every Sentinel-2 tile (the UTM/MGRS grid covers 80 S to 84 N)"
        )
    code = mgrs.MGRS().toMGRS(lat, lon, MGRSPrecision=0)
    code = code.decode() if isinstance(code, bytes) else code
    return normalise_tile(code[:5])


def tiles_of_points(lats: np.ndarray, lons: np.ndarray) -> list[str]:
    return [tile_of(float(la), float(lo)) for la, lo in zip(lats, lons)]


def baseline_offset(processing_baseline: str | None) -> float:
    """Additive DN offset of a product: -1000 from processing baseline 04.00 (25 Jan 2022) on."""
    if not processing_baseline:
        return 0.0
    try:
        major = float(str(processing_baseline).replace("N", "").strip()[:5])
    except ValueError:
        return 0.0
    return BASELINE_OFFSET if major >= 4.0 else 0.0


def dn_to_reflectance(dn: np.ndarray, offset: float, nodata: int = 0) -> np.ndarray:
    """Digital numbers -> reflectance (float32), nodata -> NaN:
    ``(DN + offset) / 10000`` (ESA S2 L1C/L2A product specification, baseline 04.00)."""
    out = (dn.astype("float32") + np.float32(offset)) / np.float32(QUANTIFICATION_VALUE)
    out[dn == nodata] = np.nan
    return out


def masked_reflectance(
    dn: np.ndarray, offset: float, invalid: np.ndarray, nodata: int = 0, out: np.ndarray | None = None
) -> np.ndarray:
    """``dn_to_reflectance(dn, offset, nodata)`` with the ``invalid`` pixels also NaN, in one
    compiled pass (into ``out``, a float32 array of ``dn``'s shape, when given: a slice of the
    composite's date stack, so no per-product copy is stacked afterwards)."""

    if out is None:
        out = np.empty(dn.shape, dtype=np.float32)
    if dn.ndim != 2 or invalid.shape != dn.shape or out.shape != dn.shape or out.dtype != np.float32:
        raise ValueError(
            f"masked_reflectance: dn {dn.shape}, invalid {invalid.shape} and float32 out {out.shape} "
            "must be 2-D arrays of one shape"
        )
    masked_reflectance_into(dn, np.float32(offset), np.float32(QUANTIFICATION_VALUE), int(nodata), invalid, out)
    return out


def tile_bounds(tile: str) -> tuple[int, tuple[float, float, float, float]]:
    """EPSG code and UTM bounds of a Sentinel-2 tile, to within 20 m: its MGRS 100 km square plus
    the 9.8 km a tile extends past it to the east and south (a tile's origin lies 20 m west and 20-40 m
    north of the square's corner; 29TNG spans x 499980-609780, y 4590240-4700040). For footprint
    searches, whose results are checked by tile id."""

    zone, hemisphere, east, north = mgrs.MGRS().MGRSToUTM(normalise_tile(tile))  # the square's centre
    x0, y1 = east - 50_000 - 20, north + 50_000 + 40
    epsg = (32600 if hemisphere == "N" else 32700) + int(zone)
    return epsg, (x0, y1 - TILE_SIZE_M, x0 + TILE_SIZE_M, y1)


def tile_bbox_lonlat(tile: str) -> tuple[float, float, float, float]:
    """The tile's footprint as a lon/lat bounding box (for catalogs searched by footprint)."""

    epsg, (left, bottom, right, top) = tile_bounds(tile)
    return Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform_bounds(left, bottom, right, top)
