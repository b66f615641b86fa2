"""Generators for realistic Sentinel-2 products (SAFE layout, real band resolutions, SCL) used by
tests and benchmarks. Every value is derived from a seed, so expected answers can be recomputed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from landcoverpy.sentinel2 import BAND_RESOLUTION, L2A_BANDS

MTD_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>
      <PRODUCT_URI>{uri}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <Datatake><SPACECRAFT_NAME>Sentinel-2A</SPACECRAFT_NAME></Datatake>
    </Product_Info>
    <Product_Image_Characteristics>
      <BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>{cloud}</Cloud_Coverage_Assessment>
    <Image_Content_QI><NODATA_PIXEL_PERCENTAGE>{nodata}</NODATA_PIXEL_PERCENTAGE></Image_Content_QI>
  </n1:Quality_Indicators_Info>
</n1:Level-2A_User_Product>
"""


@dataclass
class GeneratedProduct:
    product_id: str
    path: Path
    dn: dict[str, np.ndarray]  # band -> DN at native resolution
    scl: np.ndarray  # 20 m
    offset: float


def make_l2a_product(
    root: Path,
    tile: str,
    when: dt.datetime,
    size10: int,
    seed: int,
    baseline: str = "05.10",
    cloud_boxes: list[tuple[int, int, int, int]] | None = None,
    origin: tuple[float, float] = (300000.0, 4100000.0),
    crs: str = "EPSG:32630",
    cloud_percentage: float = 5.0,
    ext: str = "tif",
) -> GeneratedProduct:
    """An L2A SAFE folder with every band at its native resolution and an SCL layer; clouds (SCL 9)
    in ``cloud_boxes`` given as 20 m pixel boxes (row0, row1, col0, col1)."""
    assert size10 % 6 == 0, "size must be divisible by 6 so 20 m and 60 m grids align"
    offset = -1000.0 if float(baseline) >= 4 else 0.0
    stamp = when.strftime("%Y%m%dT%H%M%S")
    pid = f"S2A_MSIL2A_{stamp}_N{baseline.replace('.', '')}_R008_T{tile}_{stamp}"
    safe = root / f"{pid}.SAFE"
    img = safe / "GRANULE" / f"L2A_T{tile}_A000000_{stamp}" / "IMG_DATA"
    rng = np.random.default_rng(seed)
    ground = np.random.default_rng(1234)  # same landscape for every product of a test
    dn: dict[str, np.ndarray] = {}
    for band in L2A_BANDS:
        res = BAND_RESOLUTION[band]
        n = size10 * 10 // res
        folder = img / f"R{res}m"
        folder.mkdir(parents=True, exist_ok=True)
        if band == "SCL":
            arr = np.full((n, n), 4, dtype="uint8")  # vegetation
            for r0, r1, c0, c1 in cloud_boxes or []:
                arr[r0:r1, c0:c1] = 9
        else:
            surface = ground.uniform(200, 4000, size=(n, n))
            noise = rng.normal(0, 150, size=(n, n))
            arr = np.clip(surface + noise - offset, 1, 20000).astype("uint16")
        dn[band] = arr
        transform = Affine(res, 0, origin[0], 0, -res, origin[1])
        with rasterio.open(
            folder / f"T{tile}_{stamp}_{band}_{res}m.{ext}",
            "w",
            driver="GTiff" if ext == "tif" else "JP2OpenJPEG",
            width=n,
            height=n,
            count=1,
            dtype=arr.dtype,
            crs=crs,
            transform=transform,
            nodata=0,
        ) as dst:
            dst.write(arr, 1)
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">{int(offset)}</BOA_ADD_OFFSET>' for i in range(13))
    (safe / "MTD_MSIL2A.xml").write_text(
        MTD_TEMPLATE.format(
            start=when.isoformat() + ".024Z",
            uri=f"{pid}.SAFE",
            baseline=baseline,
            offsets=offsets,
            cloud=cloud_percentage,
            nodata=0.0,
        )
    )
    return GeneratedProduct(pid, safe, dn, dn["SCL"], offset)


def expected_stack(products: list[GeneratedProduct], band: str, size10: int) -> np.ndarray:
    """(products, rows, cols) reflectance of ``band`` on the 10 m grid, clouds and nodata NaN."""
    layers = []
    for p in products:
        f = BAND_RESOLUTION[band] // 10
        dn = np.repeat(np.repeat(p.dn[band], f, axis=0), f, axis=1)[:size10, :size10].astype("float32")
        scl = np.repeat(np.repeat(p.scl, 2, axis=0), 2, axis=1)
        refl = (dn + p.offset) / 10000.0
        refl[np.isin(scl, (0, 1, 3, 8, 9, 10, 11)) | (dn == 0)] = np.nan
        layers.append(refl)
    return np.stack(layers)


def expected_median(products: list[GeneratedProduct], band: str, size10: int) -> np.ndarray:
    """The composite of ``band`` computed straightforwardly: nearest upsampling to 10 m, SCL
    cloud classes masked, offset applied, NaN-median, quantised like the stored composite."""
    layers = list(expected_stack(products, band, size10))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            med = np.nanmedian(np.stack(layers), axis=0)
    out = np.zeros(med.shape, dtype="uint16")
    ok = ~np.isnan(med)
    out[ok] = np.clip(np.rint(med[ok] * 10000), 1, 65535)
    return out
