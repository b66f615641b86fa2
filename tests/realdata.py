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
    return blob[8 + envelope:]


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
