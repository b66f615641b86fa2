"""Loaders for ../shared/data (read in place, never copied into the repo)."""

from __future__ import annotations

import json
import sqlite3
from functools import lru_cache
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from rasterio.transform import from_bounds

from tests.conftest import shared_data

S2_BANDS_13 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def slovenia() -> Path:
    return shared_data("eolearn-slovenia")


def slovenia_transform() -> tuple[Affine, str]:
    bbox = json.loads((slovenia() / "bbox.geojson").read_text())
    xs = [c[0] for c in bbox["coordinates"][0]]
    ys = [c[1] for c in bbox["coordinates"][0]]
    return from_bounds(min(xs), min(ys), max(xs), max(ys), 100, 101), "EPSG:32633"


def _gpkg_wkb(blob: bytes) -> bytes:
    """Strip the GeoPackage geometry header (magic, version, flags, srs id, envelope)."""
    assert blob[:2] == b"GP"
    envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(blob[3] >> 1) & 0x07]
    return blob[8 + envelope :]


@lru_cache(maxsize=1)
def slovenia_raba() -> np.ndarray:
    """RABA_ID (fine land-use class) rasterised from LULC.gpkg on the 101 x 100 grid."""
    import shapely

    transform, _ = slovenia_transform()
    con = sqlite3.connect(slovenia() / "LULC.gpkg")
    rows = con.execute('SELECT geom, RABA_ID FROM "LULC"').fetchall()
    con.close()
    shapes = [(shapely.from_wkb(_gpkg_wkb(g)), int(r)) for g, r in rows]
    return rasterize(shapes, out_shape=(101, 100), transform=transform, fill=0, dtype="int32")


def slovenia_lulc() -> np.ndarray:
    return np.load(slovenia() / "LULC.npy")[..., 0].astype("int32")


def slovenia_scenes() -> np.ndarray:
    """(5, 101, 100, 13) L1C reflectance."""
    return np.load(slovenia() / "REFERENCE_SCENES.npy")


def slovenia_products(root: Path, tile: str = "33TVM") -> list[dict]:
    """The five reference scenes as L2A-layout products (product.json folders): every band at its
    native resolution (2x2 / 6x6 block means of the 10 m data), and an SCL layer made from the
    scene's real cloud mask (CLM: cloud -> SCL 9) and data mask (IS_DATA 0 -> SCL 0).
    Returns per product the 10 m reflectance stack and cloud mask used, for expected answers."""
    import datetime as dt

    import rasterio

    from landcoverpy.sentinel2 import BAND_RESOLUTION, L2A_BANDS

    scenes = slovenia_scenes()
    times = json.loads((slovenia() / "timestamps.json").read_text())
    clm = np.load(slovenia() / "CLM.npy")[..., 0]
    is_data = np.load(slovenia() / "IS_DATA.npy")[..., 0]
    order = [2, 1, 4, 3, 0]  # scene i is timestamps[order[i]] (see the data README)
    transform, crs = slovenia_transform()
    out = []
    for i, t_idx in enumerate(order):
        when = dt.datetime.fromisoformat(str(times[t_idx]).replace("Z", ""))
        pid = f"slovenia_{when:%Y%m%dT%H%M%S}"
        folder = root / pid
        folder.mkdir(parents=True, exist_ok=True)
        bands = {}
        refl10 = {b: scenes[i, :, :, j] for j, b in enumerate(S2_BANDS_13)}
        for band in L2A_BANDS:
            res = BAND_RESOLUTION[band]
            f = res // 10
            if band == "SCL":
                scl = np.where(clm[t_idx] == 1, 9, 4).astype("uint8")
                scl[is_data[t_idx] == 0] = 0
                src = scl
            else:
                src = np.clip(np.rint(refl10[band] * 10000), 1, 65535).astype("uint16")
            h, w = -(-src.shape[0] // f), -(-src.shape[1] // f)
            padded = np.pad(src, ((0, h * f - src.shape[0]), (0, w * f - src.shape[1])), mode="edge")
            if band == "SCL":
                arr = padded[::f, ::f]
            else:
                arr = np.rint(padded.reshape(h, f, w, f).mean(axis=(1, 3))).astype("uint16")
            path = folder / f"{band}.tif"
            with rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=w,
                height=h,
                count=1,
                dtype=arr.dtype,
                crs=crs,
                transform=transform @ transform.scale(f, f),
            ) as dst:
                dst.write(arr, 1)
            bands[band] = path.name
        (folder / "product.json").write_text(
            json.dumps(
                {
                    "product_id": pid,
                    "tile": tile,
                    "sensing_time": when.isoformat(),
                    "level": "L2A",
                    "processing_baseline": "02.04",
                    "cloud_percentage": float(100 * clm[t_idx].mean()),
                    "nodata_percentage": float(100 * (1 - is_data[t_idx].mean())),
                    "bands": bands,
                }
            )
        )
        out.append({"product_id": pid, "when": when, "cloud": clm[t_idx] == 1})
    return out
