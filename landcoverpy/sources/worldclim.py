"""Climate normals from WorldClim 2.1 (Fick & Hijmans 2017) as abundance ancillaries.

WorldClim 2.1 distributes monthly normals (1970-2000) as ``wc2.1_{res}_{var}_{MM}.tif`` (res
``30s``, ``2.5m``, ``5m`` or ``10m``; var ``tmin``, ``tmax``, ``tavg``, ``prec``, ...; MM 01-12),
packed per variable as ``wc2.1_{res}_{var}.zip``. A source is a folder holding those GeoTIFFs or
zips (as downloaded), or an http(s) / s3 URL of such a folder (files read over HTTP with GDAL's
virtual file systems, never downloaded whole).

The ancillary variables, on the abundance grid:

- ``precipitation``: annual total, the sum of the 12 monthly ``prec`` (mm);
- ``tmean``: annual mean of ``tavg``; ``tmax`` / ``tmin``: annual mean of the monthly ``tmax`` /
  ``tmin`` (deg C);
- ``pet``: potential evapotranspiration (mm/year) by Hargreaves & Samani (1985) from the monthly
  ``tavg``, ``tmax``, ``tmin`` and the extraterrestrial radiation of the pixel's latitude (FAO-56,
  eq. 21-25), summed over the months (WorldClim has no PET of its own).

Each monthly layer is resampled onto the grid with ``average`` where the source is finer than the
grid and ``bilinear`` where it is coarser (a 1 km climate field under 500 m MODIS pixels).
"""

from __future__ import annotations

import calendar
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landcoverpy.errors import InputValidationError

VARIABLES = ("precipitation", "pet", "tmean", "tmax", "tmin")
NEEDS = {
    "precipitation": ("prec",),
    "tmean": ("tavg",),
    "tmax": ("tmax",),
    "tmin": ("tmin",),
    "pet": ("tavg", "tmax", "tmin"),
}
PREFIX = "worldclim:"


@dataclass(frozen=True)
class WorldClim:
    """Where the monthly layers are: ``root`` a folder or URL; ``res`` the resolution tag (found
    in a folder; needed for a URL)."""

    root: str
    res: str | None = None

    def is_remote(self) -> bool:
        return "://" in self.root

    def layer(self, var: str, month: int) -> str:
        """A GDAL path of one monthly layer; a missing layer is an error naming the file wanted."""
        if self.is_remote():
            res = self.res or "30s"
            return f"{self.root.rstrip('/')}/wc2.1_{res}_{var}_{month:02d}.tif"
        folder = Path(self.root)
        pattern = re.compile(rf"wc2\.1_(?P<res>[0-9.]+[sm])_{var}_{month:02d}\.tif$")
        for path in sorted(folder.glob(f"wc2.1_*_{var}_{month:02d}.tif")):
            m = pattern.search(path.name)
            if m and (self.res is None or m.group("res") == self.res):
                return str(path)
        for archive in sorted(folder.glob(f"wc2.1_*_{var}.zip")):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    m = pattern.search(name)
                    if m and (self.res is None or m.group("res") == self.res):
                        return f"/vsizip/{archive}/{name}"
        res = self.res or next(
            (m.group(1) for f in sorted(folder.glob("wc2.1_*")) if (m := re.match(r"wc2\.1_([0-9.]+[sm])_", f.name))),
            "{res}",
        )
        raise InputValidationError(
            f"WorldClim folder {folder}: no wc2.1_{res}_{var}_{month:02d}.tif (nor wc2.1_{res}_{var}.zip holding it); "
            "download the WorldClim 2.1 monthly variables tavg, tmin, tmax and prec there"
        )

    def spec(self, variable: str) -> str:
        """The ancillary source string recorded with datasets (read again at prediction)."""
        return f"{PREFIX}{self.root}#{variable}" + (f"@{self.res}" if self.res else "")

    @classmethod
    def from_spec(cls, spec: str) -> tuple[WorldClim, str]:
        body = spec[len(PREFIX) :]
        root, _, rest = body.rpartition("#")
        variable, _, res = rest.partition("@")
        if variable not in VARIABLES:
            raise InputValidationError(f"{spec}: unknown climate variable {variable!r}; use {', '.join(VARIABLES)}")
        return cls(root, res or None), variable


def extraterrestrial_radiation(lat_deg: np.ndarray, doy: int) -> np.ndarray:
    """Ra (MJ m-2 day-1) of day ``doy`` at latitude ``lat_deg`` (FAO-56 eq. 21-25)."""
    phi = np.radians(lat_deg)
    dr = 1 + 0.033 * np.cos(2 * np.pi * doy / 365)
    delta = 0.409 * np.sin(2 * np.pi * doy / 365 - 1.39)
    ws = np.arccos(np.clip(-np.tan(phi) * np.tan(delta), -1, 1))
    return (
        (24 * 60 / np.pi) * 0.0820 * dr * (ws * np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.sin(ws))
    )


def hargreaves_daily(tavg: np.ndarray, tmax: np.ndarray, tmin: np.ndarray, ra: np.ndarray) -> np.ndarray:
    """Reference evapotranspiration (mm day-1) by Hargreaves' equation (FAO-56 eq. 52):
    0.0023 (Tmean + 17.8) sqrt(Tmax - Tmin) Ra, Ra (MJ m-2 day-1) taken as mm of evaporated water
    (x 0.408); none where the diurnal range or the result is negative."""
    daily = 0.0023 * (tavg + 17.8) * np.sqrt(np.maximum(tmax - tmin, 0)) * 0.408 * ra
    return np.maximum(daily, 0)


def hargreaves_pet(tavg: np.ndarray, tmax: np.ndarray, tmin: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """Annual PET (mm) from (12, ...) monthly temperatures: the sum over months of the month's
    days x :func:`hargreaves_daily`, with Ra of the month's 15th day (as FAO-56's Annex 2 tables
    of Ra)."""
    total = np.zeros(np.shape(lat_deg), dtype="float64")
    for m in range(12):
        days = calendar.monthrange(2001, m + 1)[1]
        mid = sum(calendar.monthrange(2001, k + 1)[1] for k in range(m)) + 15
        ra = extraterrestrial_radiation(lat_deg, mid)
        total += days * hargreaves_daily(tavg[m], tmax[m], tmin[m], ra)
    return total.astype("float32")


def climate_variable(variable: str, monthly: dict[str, np.ndarray], lat_deg: np.ndarray) -> np.ndarray:
    """One variable from the (12, ...) monthly layers it needs."""
    if variable == "precipitation":
        return monthly["prec"].sum(axis=0).astype("float32")
    if variable == "tmean":
        return monthly["tavg"].mean(axis=0).astype("float32")
    if variable == "tmax":
        return monthly["tmax"].mean(axis=0).astype("float32")
    if variable == "tmin":
        return monthly["tmin"].mean(axis=0).astype("float32")
    if variable == "pet":
        return hargreaves_pet(monthly["tavg"], monthly["tmax"], monthly["tmin"], lat_deg)
    raise InputValidationError(f"unknown climate variable {variable!r}; use {', '.join(VARIABLES)}")
