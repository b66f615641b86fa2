"""landcoverpy: scalable land use / land cover mapping from satellite imagery."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("landcoverpy")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
