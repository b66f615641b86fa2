"""MODIS surface reflectance (MOD09A1 8-day / MOD09GA daily, collection 6/6.1) from HDF4-EOS
granules, with pyhdf: scale factor, fill value, valid range and QA bits applied.

The result is a 7-band float32 reflectance raster on the granule's sinusoidal grid with NaN
where a value is missing or fails QA, written as a GeoTIFF that the abundance stage reads.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from landcoverpy.errors import InputValidationError
from landcoverpy.extras import require

SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
BANDS = [f"b{i:02d}" for i in range(1, 8)]


@dataclass(frozen=True)
class ModisQA:
    """Which pixels to drop. Defaults keep only highest-quality, clear, shadow-free pixels."""

    require_ideal_band_quality: bool = True  # per-band 4-bit quality must be 0000
    drop_cloudy: bool = True  # state cloud bits 0-1 in {01 cloudy, 10 mixed}
    drop_cloud_shadow: bool = True  # state bit 2
    drop_adjacent_cloud: bool = False  # state bit 13
    drop_snow: bool = False  # state bit 12 (MOD35 snow/ice)


def bits(value: np.ndarray, start: int, count: int) -> np.ndarray:
    """Unsigned field of ``count`` bits starting at bit ``start`` (LSB = bit 0)."""
    return (value.astype(np.uint64) >> np.uint64(start)) & np.uint64((1 << count) - 1)


def qc_mask(qc: np.ndarray, band_index: int, qa: ModisQA) -> np.ndarray:
    """True where the 500 m QC word rejects band ``band_index`` (1-7): MODLAND bits 0-1 equal
    10 (cloud) or 11 (not produced), or the band's 4-bit quality (bits 2+4(i-1)) is not 0000."""
    modland = bits(qc, 0, 2)
    bad = (modland == 2) | (modland == 3)
    if qa.require_ideal_band_quality:
        bad |= bits(qc, 2 + 4 * (band_index - 1), 4) != 0
    return bad


def state_mask(state: np.ndarray, qa: ModisQA) -> np.ndarray:
    """True where the state word marks cloud, cloud shadow, adjacency or snow (per ``qa``)."""
    bad = np.zeros(state.shape, dtype=bool)
    if qa.drop_cloudy:
        cloud = bits(state, 0, 2)
        bad |= (cloud == 1) | (cloud == 2)
    if qa.drop_cloud_shadow:
        bad |= bits(state, 2, 1) == 1
    if qa.drop_adjacent_cloud:
        bad |= bits(state, 13, 1) == 1
    if qa.drop_snow:
        bad |= bits(state, 12, 1) == 1
    return bad


def scale(raw: np.ndarray, attrs: dict[str, object]) -> np.ndarray:
    """Raw integers -> reflectance, NaN for fill and out-of-range values. MOD09 stores
    ``scale_factor = 10000`` meaning *divide* (reflectance = raw / 10000); products that store a
    factor below 1 mean *multiply*; both are handled."""
    data = raw.astype("float32")
    fill = attrs.get("_FillValue")
    valid: Any = attrs.get("valid_range")
    lo, hi = (valid[0], valid[1]) if valid is not None else (None, None)
    invalid = np.zeros(raw.shape, dtype=bool)
    if fill is not None:
        invalid |= raw == fill
    if lo is not None:
        invalid |= (raw < lo) | (raw > hi)
    factor = float(attrs.get("scale_factor", 1.0))  # type: ignore[arg-type]
    offset = float(attrs.get("add_offset", 0.0))  # type: ignore[arg-type]
    data = (data - offset) / factor if factor > 1 else (data - offset) * factor
    data[invalid] = np.nan
    return data


def _grid_from_metadata(struct: str, grid_name_hint: str = "500m") -> tuple[tuple[float, ...], int, int]:
    for block in re.findall(r"GROUP=GRID_\d+(.*?)END_GROUP=GRID_\d+", struct, re.S):
        if grid_name_hint not in block:
            continue
        xdim = int(re.search(r"XDim=(\d+)", block).group(1))  # type: ignore[union-attr]
        ydim = int(re.search(r"YDim=(\d+)", block).group(1))  # type: ignore[union-attr]
        ul = [float(v) for v in re.search(r"UpperLeftPointMtrs=\(([^)]*)\)", block).group(1).split(",")]  # type: ignore[union-attr]
        lr = [float(v) for v in re.search(r"LowerRightMtrs=\(([^)]*)\)", block).group(1).split(",")]  # type: ignore[union-attr]
        res_x, res_y = (lr[0] - ul[0]) / xdim, (ul[1] - lr[1]) / ydim
        return (res_x, 0.0, ul[0], 0.0, -res_y, ul[1]), xdim, ydim
    raise InputValidationError(f"no {grid_name_hint} grid in the HDF-EOS StructMetadata")


@dataclass
class ModisGranule:
    reflectance: np.ndarray  # (7, rows, cols) float32, NaN = missing or rejected
    transform: tuple[float, ...]
    crs: str
    granule_id: str
    tile: str  # "h14v17"
    date: str  # "2008-10-22" (from AYYYYDDD: the first day of an 8-day composite)
    day_of_year: np.ndarray | None = None  # MOD09A1: each pixel's day of acquisition (0 = none)


def read_mod09(path: str | Path, qa: ModisQA | None = None) -> ModisGranule:
    """Read bands 1-7 at 500 m of a MOD09A1 or MOD09GA granule with QA applied (MOD09A1: the
    500 m QC and state words, and pixels without a day of acquisition are missing)."""

    require("modis")
    from pyhdf.error import HDF4Error
    from pyhdf.SD import SD, SDC

    qa = qa or ModisQA()
    path = Path(path)
    try:
        sd = SD(str(path), SDC.READ)
    except HDF4Error as exc:
        raise InputValidationError(f"{path}: not a readable HDF4 file ({exc})") from None
    try:
        names = set(sd.datasets())
        daily = "sur_refl_b01_1" in names
        suffix = "_1" if daily else ""
        band_sds = [f"sur_refl_{b}{suffix}" for b in BANDS]
        missing = [n for n in band_sds if n not in names]
        if missing:
            raise InputValidationError(f"{path}: not a MOD09 granule (missing {', '.join(missing)})")
        qc_name = "QC_500m_1" if daily else "sur_refl_qc_500m"
        state_name = "state_1km_1" if daily else "sur_refl_state_500m"
        qc = sd.select(qc_name).get()
        state = sd.select(state_name).get()
        if state.shape != qc.shape:  # daily state is at 1 km: repeat onto the 500 m grid
            factor = qc.shape[0] // state.shape[0]
            state = np.repeat(np.repeat(state, factor, axis=0), factor, axis=1)
        reject_state = state_mask(state, qa)
        day_of_year = None
        if "sur_refl_day_of_year" in names:  # MOD09A1: the day each pixel's observation was made
            doy_sds = sd.select("sur_refl_day_of_year")
            raw_doy = doy_sds.get()
            no_day = raw_doy == doy_sds.attributes().get("_FillValue", 65535)
            day_of_year = np.where(no_day, 0, raw_doy).astype(np.uint16)
            reject_state |= no_day
        bands = []
        for i, name in enumerate(band_sds, start=1):
            sds = sd.select(name)
            refl = scale(sds.get(), sds.attributes())
            refl[qc_mask(qc, i, qa) | reject_state] = np.nan
            bands.append(refl)
        transform, _, _ = _grid_from_metadata(sd.attributes()["StructMetadata.0"], "500m")
    finally:
        sd.end()
    match = re.search(r"\.A(\d{4})(\d{3})\.(h\d{2}v\d{2})\.", path.name)
    if not match:
        raise InputValidationError(f"{path.name}: cannot read the date and tile from the granule name")
    date = dt.date(int(match.group(1)), 1, 1) + dt.timedelta(days=int(match.group(2)) - 1)
    return ModisGranule(
        np.stack(bands), transform, SINUSOIDAL, path.stem, match.group(3), date.isoformat(), day_of_year
    )


def write_geotiff(granule: ModisGranule, out: str | Path) -> Path:

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _, rows, cols = granule.reflectance.shape
    with rasterio.open(
        out,
        "w",
        driver="GTiff",
        width=cols,
        height=rows,
        count=7,
        dtype="float32",
        crs=granule.crs,
        transform=Affine(*granule.transform),
        nodata=float("nan"),
        tiled=True,
        compress="DEFLATE",
        predictor=3,
    ) as dst:
        dst.write(granule.reflectance)
        for i, b in enumerate(BANDS, start=1):
            dst.set_band_description(i, b)
        dst.update_tags(granule=granule.granule_id, tile=granule.tile, date=granule.date)
    return out
