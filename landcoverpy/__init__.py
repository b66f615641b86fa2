"""landcoverpy: scalable land use / land cover mapping from satellite imagery.

``from landcoverpy import Workflow`` gives the Python API (:mod:`landcoverpy.api`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("landcoverpy")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["Workflow", "__version__"]


def __getattr__(name: str) -> Any:  # the API imports the stages: only when asked for
    if name == "Workflow":
        from landcoverpy.api import Workflow

        return Workflow
    raise AttributeError(f"module 'landcoverpy' has no attribute {name!r}")
