"""Spectral indices on reflectance arrays (float, NaN = nodata). Each formula cites its source.

All functions take and return numpy arrays of the same shape; division by zero gives NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from landcoverpy.raster.pixelkernels import as_2d, normalized_difference_into


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(num, den)
    out = np.asarray(out, dtype="float32")
    out[~np.isfinite(out)] = np.nan
    return out


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b) as float32, NaN where not finite: on two float arrays of one shape and
    type, one compiled pass (the same operations as ``_ratio(a - b, a + b)``, which the rest takes)."""
    if (
        isinstance(a, np.ndarray)
        and isinstance(b, np.ndarray)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.dtype in (np.float32, np.float64)
        and a.size
    ):
        out = np.empty(a.shape, dtype=np.float32)
        normalized_difference_into(as_2d(a), as_2d(b), as_2d(out))
        return out
    return _ratio(a - b, a + b)


def ndvi(b04: np.ndarray, b08: np.ndarray) -> np.ndarray:
    """NDVI = (NIR - Red) / (NIR + Red). Rouse et al. (1974), NASA/GSFC Type III report."""
    return normalized_difference(b08, b04)


def evi2(b04: np.ndarray, b08: np.ndarray) -> np.ndarray:
    """EVI2 = 2.5 (NIR - Red) / (NIR + 2.4 Red + 1). Jiang et al. (2008), Remote Sens. Environ. 112:3833."""
    return _ratio(2.5 * (b08 - b04), b08 + 2.4 * b04 + 1.0)


def mndwi(b03: np.ndarray, b11: np.ndarray) -> np.ndarray:
    """MNDWI = (Green - SWIR1) / (Green + SWIR1). Xu (2006), Int. J. Remote Sens. 27:3025."""
    return normalized_difference(b03, b11)


def ndre(b05: np.ndarray, b8a: np.ndarray) -> np.ndarray:
    """NDRE = (NIR narrow B8A - RedEdge B05) / (B8A + B05). Gitelson & Merzlyak (1994),
    J. Plant Physiol. 143:286 (red-edge NDVI)."""
    return normalized_difference(b8a, b05)


def osavi(b04: np.ndarray, b08: np.ndarray) -> np.ndarray:
    """OSAVI = (NIR - Red) / (NIR + Red + 0.16). Rondeaux et al. (1996), Remote Sens. Environ. 55:95."""
    return _ratio(b08 - b04, b08 + b04 + 0.16)


def ndmi(b08: np.ndarray, b11: np.ndarray) -> np.ndarray:
    """NDMI (moisture) = (NIR - SWIR1) / (NIR + SWIR1). Gao (1996) NDWI, Remote Sens. Environ. 58:257."""
    return normalized_difference(b08, b11)


def ndyi(b02: np.ndarray, b03: np.ndarray) -> np.ndarray:
    """NDYI = (Green - Blue) / (Green + Blue). Sulik & Long (2016), ISPRS J. 118:89 (yellowness)."""
    return normalized_difference(b03, b02)


def ri(b03: np.ndarray, b04: np.ndarray) -> np.ndarray:
    """RI (redness) = (Red - Green) / (Red + Green). Escadafal & Huete (1991), C. R. Acad. Sci. 312:1385."""
    return normalized_difference(b04, b03)


def cri1(b02: np.ndarray, b03: np.ndarray) -> np.ndarray:
    """CRI1 = 1/Blue - 1/Green (carotenoid reflectance index with Sentinel-2 B02, B03).
    Gitelson et al. (2002), Photochem. Photobiol. 75:272."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (1.0 / b02 - 1.0 / b03).astype("float32")
    out[~np.isfinite(out)] = np.nan
    return out


def bsi(b02: np.ndarray, b04: np.ndarray, b08: np.ndarray, b11: np.ndarray) -> np.ndarray:
    """BSI = ((SWIR1 + Red) - (NIR + Blue)) / ((SWIR1 + Red) + (NIR + Blue)).
    Rikimaru et al. (2002), Tropical Ecology 43:39."""
    return normalized_difference(b11 + b04, b08 + b02)


def ndbi(b08: np.ndarray, b11: np.ndarray) -> np.ndarray:
    """NDBI = (SWIR1 - NIR) / (SWIR1 + NIR). Zha et al. (2003), Int. J. Remote Sens. 24:583."""
    return normalized_difference(b11, b08)


# name -> (function, bands in argument order)
INDICES: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...]]] = {
    "ndvi": (ndvi, ("B04", "B08")),
    "evi2": (evi2, ("B04", "B08")),
    "mndwi": (mndwi, ("B03", "B11")),
    "ndre": (ndre, ("B05", "B8A")),
    "osavi": (osavi, ("B04", "B08")),
    "ndmi": (ndmi, ("B08", "B11")),
    "ndyi": (ndyi, ("B02", "B03")),
    "ri": (ri, ("B03", "B04")),
    "cri1": (cri1, ("B02", "B03")),
    "bsi": (bsi, ("B02", "B04", "B08", "B11")),
    "ndbi": (ndbi, ("B08", "B11")),
}


def compute_index(name: str, bands: dict[str, np.ndarray]) -> np.ndarray:
    fn, needed = INDICES[name]
    return fn(*(bands[b] for b in needed))
