"""What every provider returns and implements."""

from __future__ import annotations

import contextlib
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any


@dataclass(frozen=True)
class BandAsset:
    band: str
    href: str  # provider-specific location (path, URL, blob name)
    resolution: int | None = None
    size: int | None = None  # bytes, when the provider knows it (checked after the download)

    @property
    def extension(self) -> str:
        name = self.href.split("?")[0].rsplit("/", 1)[-1]
        return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ".tif"


@dataclass(frozen=True)
class ProductCandidate:
    product_id: str
    tile: str
    sensing_time: dt.datetime
    platform: str
    level: str  # "L1C" or "L2A"
    processing_baseline: str | None
    cloud_percentage: float
    nodata_percentage: float
    provider: str
    assets: dict[str, BandAsset]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def useful_percentage(self) -> float:
        """100 - cloud % - nodata %, as the original landcoverpy ranks products."""
        return max(0.0, 100.0 - self.cloud_percentage - self.nodata_percentage)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d["sensing_time"] = self.sensing_time.isoformat()
        d["assets"] = {k: asdict(v) for k, v in self.assets.items()}
        return d


class Provider(ABC):
    settings_hint: str = "the provider settings"  # what a user checks when it stays unreachable
    name: str = "provider"

    @abstractmethod
    def search(self, tile: str, start: dt.date, end: dt.date) -> list[ProductCandidate]:
        """Products of ``tile`` sensed between ``start`` and ``end`` (inclusive)."""

    @abstractmethod
    @contextlib.contextmanager
    def open_asset(self, product: ProductCandidate, asset: BandAsset) -> Iterator[IO[bytes]]:
        """A binary stream of one asset (never read whole into memory)."""

    def describe(self) -> str:
        return self.name

    def open_range(self, product: ProductCandidate, asset: BandAsset) -> Any:
        """A seekable file over the asset fetching only the byte ranges read (with a ``fetched``
        byte count), for reading windows of it; None when the provider can only stream whole
        assets (then an area of interest still gets whole products)."""
        return None


def in_range(when: dt.datetime, start: dt.date, end: dt.date) -> bool:
    return start <= when.date() <= end
