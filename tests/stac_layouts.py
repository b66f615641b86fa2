"""STAC catalogs in each real layout, serving the same pixels: the cut of the demo's real scene
(tests/lineage_scene.py) as one Item per catalog, built from that catalog's real Item
(tests/fixtures/stac_items, sources in its README).

Where a catalog's data carry the processing-baseline offset, the served digital numbers are the
scene's plus 1000 (nodata stays 0), as a baseline 04.00+ product's are; Earth Search's
``sentinel-2-l2a`` has the offset already removed (``earthsearch:boa_offset_applied``), so it serves
the scene's numbers. Every layout therefore describes the same reflectances. L2A layouts carry an
SCL band of class 4 (vegetation: every pixel clear), the scene being L1C.

The band of each asset key is written here from the catalogs' documentation, not taken from the
code under test.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.warp
from pyproj import Transformer

from landcoverpy.raster.cog import translate_to_cog
from landcoverpy.sentinel2 import BAND_RESOLUTION, L1C_BANDS, L2A_BANDS

TEMPLATES = Path(__file__).parent / "fixtures" / "stac_items"
SENSED = "20160112T155622"
DATETIME = "2016-01-12T15:56:22.024000Z"
TILE = "18SVG"
SHIFT = 1000

EARTH_SEARCH_KEYS = {
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


def earth_search_band(key: str) -> tuple[str, int | None] | None:
    return (EARTH_SEARCH_KEYS[key], None) if key in EARTH_SEARCH_KEYS else None


def band_id_key(key: str) -> tuple[str, int | None] | None:
    """``B02`` (Planetary Computer, CDSE L1C) or ``B02_10m`` (CDSE L2A)."""
    match = re.fullmatch(r"(B\d\d|B8A|SCL)(?:_(\d+)m)?", key)
    return (match.group(1), int(match.group(2)) if match.group(2) else None) if match else None


# where each catalog keeps the GLO-30 COGs (the DEM collection is the profile's)
DEM_STORAGE = {
    "earth-search": ("cop-dem-glo-30", "s3://copernicus-dem-30m"),
    "planetary-computer": ("cop-dem-glo-30", None),
    "cdse": ("cop-dem-glo-30-dged-cog", "s3://eodata/auxdata/CopDEM_COG"),
}


@dataclass(frozen=True)
class Layout:
    name: str
    template: str
    collection: str
    level: str
    band_of: Callable[[str], tuple[str, int | None] | None]
    shift: int  # added to every valid digital number
    s3_bucket: str | None  # assets under s3://bucket/..., else http from the STAC server
    item_id: str
    landing_id: str
    conforms: str  # the STAC server's extensions: query, filter
    profile: str  # STAC_PROFILE for the run ("auto": told by the landing page)
    ext: str = ".tif"

    @property
    def bands(self) -> list[str]:
        return L2A_BANDS if self.level == "L2A" else L1C_BANDS


SAFE_L2A = f"S2A_MSIL2A_{SENSED}_N0510_R054_T{TILE}_20160112T201513"
SAFE_L1C = f"S2A_MSIL1C_{SENSED}_N0510_R054_T{TILE}_20160112T181530"
LAYOUTS = {
    layout.name: layout
    for layout in (
        Layout(
            "earth-search-l2a",
            "earth-search-v1-sentinel-2-l2a.json",
            "sentinel-2-l2a",
            "L2A",
            earth_search_band,
            0,
            None,
            f"S2A_{TILE}_20160112_0_L2A",
            "earth-search-aws",
            "query",
            "auto",
        ),
        Layout(
            "earth-search-c1",
            "earth-search-v1-sentinel-2-c1-l2a.json",
            "sentinel-2-c1-l2a",
            "L2A",
            earth_search_band,
            SHIFT,
            None,
            f"S2A_T{TILE}_{SENSED}_L2A",
            "earth-search-aws",
            "query",
            "auto",
        ),
        Layout(
            "earth-search-l1c",
            "earth-search-v1-sentinel-2-l1c.json",
            "sentinel-2-l1c",
            "L1C",
            earth_search_band,
            SHIFT,
            "sentinel-s2-l1c",
            f"S2A_{TILE}_20160112_0_L1C",
            "earth-search-aws",
            "query",
            "auto",
            ".jp2",
        ),
        Layout(
            "planetary-computer",
            "planetary-computer-sentinel-2-l2a.json",
            "sentinel-2-l2a",
            "L2A",
            band_id_key,
            SHIFT,
            None,
            f"S2A_MSIL2A_{SENSED}_R054_T{TILE}_20160112T201513",
            "microsoft-pc",
            "query,filter",
            "auto",
        ),
        Layout(
            "cdse",
            "cdse-sentinel-2-l2a.json",
            "sentinel-2-l2a",
            "L2A",
            band_id_key,
            SHIFT,
            "eodata",
            SAFE_L2A,
            "cdse-stac-test",
            "filter",
            "cdse",
            ".jp2",
        ),
        Layout(
            "cdse-l1c",
            "cdse-sentinel-2-l1c.json",
            "sentinel-2-l1c",
            "L1C",
            band_id_key,
            SHIFT,
            "eodata",
            SAFE_L1C,
            "cdse-stac-test",
            "filter",
            "cdse",
            ".jp2",
        ),
    )
}


def _write_band(src: Path, dst: Path, shift: int, ext: str, blocksize: int = 512) -> None:
    with rasterio.open(src) as s:
        dn = s.read(1)
        profile = s.profile
    if shift:
        dn = np.where(dn > 0, dn.astype("int32") + shift, 0).astype(dn.dtype)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".jp2":
        jp2 = {k: profile[k] for k in ("width", "height", "count", "dtype", "crs", "transform")}
        with rasterio.open(dst, "w", driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES", nodata=0, **jp2) as out:
            out.write(dn, 1)
    else:
        tmp = dst.with_suffix(".raw.tif")
        with rasterio.open(tmp, "w", **profile) as out:
            out.write(dn, 1)
        translate_to_cog(tmp, dst, str(dn.dtype), blocksize=blocksize)
        tmp.unlink()


def _write_scl(like: Path, dst: Path, ext: str, blocksize: int = 512) -> None:
    with rasterio.open(like) as s:
        shape, crs, transform = (s.height, s.width), s.crs, s.transform
    dst.parent.mkdir(parents=True, exist_ok=True)
    meta = {"width": shape[1], "height": shape[0], "count": 1, "dtype": "uint8", "crs": crs, "transform": transform}
    scl = np.full(shape, 4, "uint8")
    if ext == ".jp2":
        with rasterio.open(dst, "w", driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES", **meta) as out:
            out.write(scl, 1)
    else:
        tmp = dst.with_suffix(".raw.tif")
        with rasterio.open(tmp, "w", driver="GTiff", **meta) as out:
            out.write(scl, 1)
        translate_to_cog(tmp, dst, "uint8", blocksize=blocksize)
        tmp.unlink()


def _footprint(path: Path) -> tuple[list[float], dict[str, Any], dict[str, Any]]:
    with rasterio.open(path) as s:
        left, bottom, right, top = s.bounds
        to_ll = Transformer.from_crs(s.crs, "EPSG:4326", always_xy=True)
        proj = {
            "proj:shape": [s.height, s.width],
            "proj:transform": list(s.transform)[:6],
            "proj:bbox": [left, bottom, right, top],
        }
    ring = [
        to_ll.transform(x, y) for x, y in ((left, bottom), (right, bottom), (right, top), (left, top), (left, bottom))
    ]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    bbox = [min(lons), min(lats), max(lons), max(lats)]
    return bbox, {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}, proj


def _properties(props: dict[str, Any], layout: Layout) -> dict[str, Any]:
    out = dict(props)
    baseline = "05.10"
    updates = {
        "datetime": DATETIME,
        "start_datetime": DATETIME,
        "end_datetime": DATETIME,
        "eo:cloud_cover": 1.5,
        "platform": "sentinel-2a",
        "grid:code": f"MGRS-{TILE}",
        "s2:mgrs_tile": TILE,
        "mgrs:utm_zone": int(TILE[:2]),
        "mgrs:latitude_band": TILE[2],
        "mgrs:grid_square": TILE[3:],
        "s2:processing_baseline": baseline,
        "processing:version": baseline,
        "s2:nodata_pixel_percentage": 0.0,
        "s2:product_uri": f"{SAFE_L2A if layout.level == 'L2A' else SAFE_L1C}.SAFE",
    }
    for key, value in updates.items():
        if key in out:
            out[key] = value
    if isinstance(out.get("statistics"), dict):
        out["statistics"] = out["statistics"] | {"nodata": 0.0}
    return out


def build_layout(
    layout: Layout, scene: Path, root: Path, s3_client: Any = None, blocksize: int = 512
) -> dict[str, Any]:
    """Write the layout's band files (under ``root/files`` or into ``s3_client``'s bucket; COGs
    tiled in ``blocksize`` pixels) and return its Item; ``scene`` is the cut's product folder (one
    GeoTIFF per L1C band)."""
    item = copy.deepcopy(json.loads((TEMPLATES / layout.template).read_text()))
    item["id"], item["collection"] = layout.item_id, layout.collection
    item["properties"] = _properties(item["properties"], layout)
    item["bbox"], item["geometry"], _ = _footprint(scene / "B02.tif")
    item["links"] = []
    files = root / "files" / layout.name
    assets = {}
    for key, asset in item["assets"].items():
        found = layout.band_of(key)
        asset = dict(asset)
        for gone in ("file:checksum", "file:local_path", "alternate", "proj:bbox"):
            asset.pop(gone, None)
        band, res = found if found else (None, None)
        if band is None or band not in layout.bands:
            asset["href"] = f"{{BASE}}/files/{layout.name}/not-served/{key}"
            assets[key] = asset
            continue
        name = f"{key}{layout.ext}"
        native = res in (None, BAND_RESOLUTION[band])
        if native:
            path = files / name
            if band == "SCL":
                _write_scl(scene / "B05.tif", path, layout.ext, blocksize)
            else:
                _write_band(scene / f"{band}.tif", path, layout.shift, layout.ext, blocksize)
            _, _, proj = _footprint(path)
            asset |= {k: v for k, v in proj.items() if k in asset}
            if "file:size" in item["assets"][key]:
                asset["file:size"] = path.stat().st_size
        if layout.s3_bucket:
            s3_key = f"{layout.collection}/{layout.item_id}/{name}"
            asset["href"] = f"s3://{layout.s3_bucket}/{s3_key}"
            if native:
                s3_client.upload_file(str(files / name), layout.s3_bucket, s3_key)
        else:
            asset["href"] = (
                f"{{BASE}}/files/{layout.name}/{name}" if native else f"{{BASE}}/files/{layout.name}/not-served/{name}"
            )
        assets[key] = asset
    item["assets"] = assets
    return item


def synthetic_dem(like: Path, dst: Path, margin_deg: float = 0.02) -> Path:
    """A GLO-30-shaped elevation COG (EPSG:4326, 1 arc-second, float32) over the footprint of
    ``like`` plus a margin: gentle relief (a slope, a ridge and a basin, 0-60 m) so slope and aspect
    vary."""
    from rasterio.transform import from_origin

    with rasterio.open(like) as s:
        west, south, east, north = rasterio.warp.transform_bounds(s.crs, "EPSG:4326", *s.bounds)
    west, south, east, north = west - margin_deg, south - margin_deg, east + margin_deg, north + margin_deg
    step = 1 / 3600
    width, height = int(np.ceil((east - west) / step)), int(np.ceil((north - south) / step))
    rows, cols = np.mgrid[0:height, 0:width].astype("float64")
    u, v = cols / width, rows / height
    z = (
        30 * u
        + 20 * np.exp(-((u - 0.3) ** 2 + (v - 0.6) ** 2) / 0.02)
        - 15 * np.exp(-((u - 0.7) ** 2 + (v - 0.3) ** 2) / 0.03)
    )
    tmp = dst.with_suffix(".raw.tif")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        tmp,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(west, north, step, step),
    ) as out:
        out.write((z + 15).astype("float32"), 1)
    translate_to_cog(tmp, dst, "float32")
    tmp.unlink()
    return dst


def build_dem_item(
    profile: str,
    dem: Path,
    root: Path,
    s3_client: Any = None,
    item_id: str = "Copernicus_DSM_COG_10_N37_00_W076_00_DEM",
) -> dict[str, Any]:
    """A GLO-30 Item in Earth Search's real layout (tests/fixtures/stac_items), in the collection
    and storage the ``profile``'s catalog uses, holding ``dem``."""
    item = json.loads((TEMPLATES / "earth-search-v1-cop-dem-glo-30.json").read_text())
    collection, storage = DEM_STORAGE[profile]
    item["id"], item["collection"], item["links"] = item_id, collection, []
    with rasterio.open(dem) as s:
        west, south, east, north = s.bounds
        item["properties"] |= {"proj:shape": [s.height, s.width], "proj:transform": list(s.transform)[:6]}
    item["bbox"] = [west, south, east, north]
    item["geometry"] = {
        "type": "Polygon",
        "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
    }
    name = f"{item_id}.tif"
    if storage is None:
        target = root / "files" / "dem" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(dem.read_bytes())
        item["assets"]["data"]["href"] = f"{{BASE}}/files/dem/{name}"
    else:
        bucket, _, prefix = storage[len("s3://") :].partition("/")
        key = f"{prefix}/{item_id}/{name}".lstrip("/")
        s3_client.upload_file(str(dem), bucket, key)
        item["assets"]["data"]["href"] = f"s3://{bucket}/{key}"
    return item
