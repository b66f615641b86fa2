"""A format-faithful MOD09A1 (collection 6.1, 8-day 500 m surface reflectance) granule, written
with pyhdf: what the MODIS reader, its QA masking and the MODIS STAC path are tested on, since no
real MOD09A1 granule is small enough to keep beside the tests.

Faithful to the product as the MOD09 user guide (Vermote, Roger & Ray, "MODIS Surface Reflectance
User's Guide, Collection 6.1", NASA GSFC, 2020: the MOD09A1 SDS table and the 500 m QC and state
bit tables) describes it, and as real granules carry it (attribute spelling as in the real MOD09GA
granule of ../shared/data/modis-mod09ga, the same product family):

- the 13 SDS with their names and HDF types: ``sur_refl_b01``..``b07`` int16 (fill -28672, valid
  -100..16000, ``scale_factor`` 10000.0 meaning reflectance = DN / 10000), ``sur_refl_qc_500m``
  uint32 (fill 4294967295), ``sur_refl_szen``/``vzen``/``raz`` int16 (degrees x 100, fill 0),
  ``sur_refl_state_500m`` uint16 (fill 65535), ``sur_refl_day_of_year`` uint16 (fill 65535);
- the 500 m QC word: bits 0-1 MODLAND (00 ideal, 01 less than ideal, 10 cloud, 11 not produced),
  then 4 quality bits per band from bit 2, bit 30 atmospheric correction, bit 31 adjacency;
- the state word: bits 0-1 cloud state (00 clear, 01 cloudy, 10 mixed, 11 not set), bit 2 cloud
  shadow, bits 3-5 land/water (001 land), bit 12 MOD35 snow/ice, bit 13 adjacent to cloud;
- a 2400 x 2400 sinusoidal grid ``MOD_Grid_500m_Surface_Reflectance`` in the HDF-EOS
  ``StructMetadata.0``, corners of the tile (h, v) on the 10 x 10 degree MODIS grid.

The pixels: smooth land reflectances per band, with marked blocks for each QA case (``CASES``)
and each pixel's day of acquisition within the 8 days of the composite.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

SIZE = 2400
TILE_METRES = 1111950.519667  # one MODIS tile: 10 degrees on the sinusoidal grid's sphere
# (rows, cols) blocks of the QA cases, each 100 x 100 pixels
CASES = {
    "clear": (slice(0, 100), slice(0, 100)),
    "modland_cloud": (slice(100, 200), slice(0, 100)),  # QC bits 0-1 = 10: every band rejected
    "band3_noisy": (slice(200, 300), slice(0, 100)),  # band 3 quality 0111: band 3 only rejected
    "state_cloudy": (slice(300, 400), slice(0, 100)),  # state bits 0-1 = 01
    "state_shadow": (slice(400, 500), slice(0, 100)),  # state bit 2
    "fill": (slice(500, 600), slice(0, 100)),  # no observation: fill everywhere
    "adjacent": (slice(600, 700), slice(0, 100)),  # state bit 13 (kept by the default QA)
}
LAND = 0b001 << 3
QC_CORRECTED = (1 << 30) | (1 << 31)  # atmospheric and adjacency correction performed


def granule_name(tile: str, year: int, doy: int, product: str = "MOD09A1") -> str:
    return f"{product}.A{year}{doy:03d}.{tile}.061.{year}{doy + 9:03d}043514.hdf"


def reflectance_dn(band: int) -> np.ndarray:
    """Band ``band``'s digital numbers (reflectance x 10000): smooth, vegetation-like."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype("float32")
    base = {1: 400, 2: 3000, 3: 300, 4: 600, 5: 2800, 6: 2000, 7: 1000}[band]
    return (base + 200 * np.sin(rows / 300) + 150 * np.cos(cols / 400)).astype("int16")


def struct_metadata(tile: str) -> str:
    h, v = int(tile[1:3]), int(tile[4:6])
    ulx, uly = (h - 18) * TILE_METRES, (9 - v) * TILE_METRES
    return (
        "GROUP=SwathStructure\nEND_GROUP=SwathStructure\nGROUP=GridStructure\n\tGROUP=GRID_1\n"
        '\t\tGridName="MOD_Grid_500m_Surface_Reflectance"\n'
        f"\t\tXDim={SIZE}\n\t\tYDim={SIZE}\n"
        f"\t\tUpperLeftPointMtrs=({ulx:.6f},{uly:.6f})\n"
        f"\t\tLowerRightMtrs=({ulx + TILE_METRES:.6f},{uly - TILE_METRES:.6f})\n"
        "\t\tProjection=GCTP_SNSOID\n\t\tProjParams=(6371007.181000,0,0,0,0,0,0,0,0,0,0,0,0)\n"
        "\t\tSphereCode=-1\n\t\tGridOrigin=HDFE_GD_UL\n\tEND_GROUP=GRID_1\nEND_GROUP=GridStructure\n"
        "GROUP=PointStructure\nEND_GROUP=PointStructure\nEND\n"
    )


def write_mod09a1(folder: Path, tile: str, year: int, doy: int) -> Path:
    """The granule of ``tile`` whose 8-day period starts on day ``doy`` of ``year``."""
    from pyhdf.SD import SD, SDC

    path = folder / granule_name(tile, year, doy)
    folder.mkdir(parents=True, exist_ok=True)
    qc = np.full((SIZE, SIZE), QC_CORRECTED, dtype=np.uint32)
    state = np.full((SIZE, SIZE), LAND, dtype=np.uint16)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    days_in_year = 366 if year % 4 == 0 else 365
    day = (doy + (rows + cols) % 8 - 1) % days_in_year + 1  # each pixel's best day in the 8
    qc[CASES["modland_cloud"]] |= 0b10
    qc[CASES["band3_noisy"]] |= 0b0111 << (2 + 4 * 2)
    state[CASES["state_cloudy"]] |= 0b01
    state[CASES["state_shadow"]] |= 0b100
    state[CASES["adjacent"]] |= 1 << 13
    fill = CASES["fill"]
    qc[fill], state[fill] = 4294967295, 65535
    sd = SD(str(path), SDC.WRITE | SDC.CREATE)
    try:
        sds_specs = []
        for band in range(1, 8):
            dn = reflectance_dn(band)
            dn[fill] = -28672
            sds_specs.append(
                (
                    f"sur_refl_b{band:02d}",
                    SDC.INT16,
                    dn,
                    {
                        "long_name": f"Surface_reflectance_for_band_{band}",
                        "units": "reflectance",
                        "valid_range": (SDC.INT16, [-100, 16000]),
                        "_FillValue": (SDC.INT16, -28672),
                        "scale_factor": (SDC.FLOAT64, 10000.0),
                        "add_offset": (SDC.FLOAT64, 0.0),
                    },
                )
            )
        angle = np.full((SIZE, SIZE), 3500, dtype=np.int16)
        angle[fill] = 0
        for name, long_name in (
            ("sur_refl_szen", "MODIS Band Solar Zenith Angle"),
            ("sur_refl_vzen", "MODIS Band View Zenith Angle"),
            ("sur_refl_raz", "MODIS Band Relative Azimuth Angle"),
        ):
            sds_specs.append(
                (
                    name,
                    SDC.INT16,
                    angle,
                    {
                        "long_name": long_name,
                        "units": "degree",
                        "valid_range": (SDC.INT16, [-18000, 18000]),
                        "_FillValue": (SDC.INT16, 0),
                        "scale_factor": (SDC.FLOAT64, 100.0),
                    },
                )
            )
        doy_sds = day.astype(np.uint16)
        doy_sds[fill] = 65535
        sds_specs += [
            (
                "sur_refl_qc_500m",
                SDC.UINT32,
                qc,
                {
                    "long_name": "500m Reflectance Band Quality",
                    "units": "bit field",
                    "valid_range": (SDC.UINT32, [0, 4294966531]),
                    "_FillValue": (SDC.UINT32, 4294967295),
                },
            ),
            (
                "sur_refl_state_500m",
                SDC.UINT16,
                state,
                {
                    "long_name": "500m State Flags",
                    "units": "bit field",
                    "valid_range": (SDC.UINT16, [0, 57343]),
                    "_FillValue": (SDC.UINT16, 65535),
                },
            ),
            (
                "sur_refl_day_of_year",
                SDC.UINT16,
                doy_sds,
                {
                    "long_name": "Julian day for each pixel",
                    "units": "Julian day",
                    "valid_range": (SDC.UINT16, [0, 366]),
                    "_FillValue": (SDC.UINT16, 65535),
                },
            ),
        ]
        for name, hdf_type, data, attrs in sds_specs:
            sds = sd.create(name, hdf_type, (SIZE, SIZE))
            sds.setcompress(SDC.COMP_DEFLATE, 1)
            for key, value in attrs.items():
                if isinstance(value, tuple):
                    sds.attr(key).set(value[0], value[1])
                else:
                    sds.attr(key).set(SDC.CHAR8, value)
            sds[:] = data
            sds.endaccess()
        sd.attr("StructMetadata.0").set(SDC.CHAR8, struct_metadata(tile))
        sd.attr("HDFEOSVersion").set(SDC.CHAR8, "HDFEOS_V2.19")
    finally:
        sd.end()
    return path


def period(year: int, doy: int) -> tuple[dt.date, dt.date]:
    start = dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)
    return start, start + dt.timedelta(days=7)
