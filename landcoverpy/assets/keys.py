"""Object keys of every asset kind. Keys contain the asset's id, so an object at a key is written
once and never replaced by other content; the only keys that are replaced are the ``latest/``
aliases, and only after the object they copy is complete and catalogued.

User data (season and label names) never becomes a key on its own: seasons appear as a readable
ASCII slug plus a digest of the exact name, labels by their (unique) map value.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from landcoverpy.storage import join_key, safe_key_part

LATEST = "latest"
BLOCKS = "blocks"
STAC_ROOT = "stac"
REPORTS = "reports"  # run reports and performance reports (classification-maps bucket)


def slug(name: str) -> str:
    """An ASCII slug of a name, for readability only (may be empty): ``Été sec`` -> ``ete-sec``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40]


def name_token(name: str) -> str:
    """A collision-free key segment for a user-given name: slug plus 8 hex digits of the exact
    name's SHA-256 (``crops/annual`` and ``crops annual`` differ; ``森林`` works)."""
    h = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    s = slug(name)
    return f"{s}-{h}" if s else f"n-{h}"


# Products (products bucket)
def product_prefix(tile: str, product_id: str) -> str:
    return join_key(safe_key_part(tile), safe_key_part(product_id))


def product_band_key(tile: str, product_id: str, band: str, extension: str, window: str | None = None) -> str:
    """A product's band; ``window`` (its tag) for a band cut to an area of interest's window."""
    name = f"{safe_key_part(band)}{extension}"
    return (
        join_key(product_prefix(tile, product_id), safe_key_part(window), name)
        if window
        else join_key(product_prefix(tile, product_id), name)
    )


# Cloud masks of L1C products (composites bucket), one per product and mask parameters
def cloud_mask_key(tile: str, product_id: str, threshold: float, average_over: int, dilation: int) -> str:
    tag = f"p{threshold:g}_a{average_over}_d{dilation}"
    return join_key("masks", safe_key_part(tile), safe_key_part(product_id), f"s2cloudless_{tag}.tif")


# Composites (composites bucket)
def composite_prefix(tile: str, season_name: str, composite_id: str) -> str:
    return join_key(safe_key_part(tile), name_token(season_name), composite_id)


def composite_layer_key(tile: str, season_name: str, composite_id: str, layer: str) -> str:
    return join_key(composite_prefix(tile, season_name, composite_id), f"{safe_key_part(layer)}.tif")


def composite_layer_done_key(tile: str, season_name: str, composite_id: str, layer: str) -> str:
    """The completion record of one layer (size, SHA-256): present = the layer is complete."""
    return join_key(composite_prefix(tile, season_name, composite_id), f"{safe_key_part(layer)}.done.json")


# DEM (aster bucket: source tiles; dem bucket: layers on a Sentinel-2 tile grid)
def aster_tile_key(name: str) -> str:
    return f"{safe_key_part(name)}_dem.tif"


def dem_source_tile_key(kind: str, name: str) -> str:
    """A source DEM tile as fetched: ASTER at the bucket's root (as stored before GLO-30 came),
    other sources under their own prefix (``glo30/Copernicus_DSM_COG_10_N37_00_W076_00_DEM.tif``)."""
    return aster_tile_key(name) if kind == "aster" else join_key(safe_key_part(kind), f"{safe_key_part(name)}.tif")


def dem_layer_key(tile: str, dem_id: str, layer: str) -> str:
    return join_key(safe_key_part(tile), dem_id, f"{safe_key_part(layer)}.tif")


# Training datasets (datasets bucket)
def dataset_key(dataset_id: str) -> str:
    return join_key("datasets", f"{dataset_id}.parquet")


def abundance_dataset_key(dataset_id: str) -> str:
    return join_key("abundance", f"{dataset_id}.parquet")


# Models (models bucket)
def member_name(level: str, category_value: int | None) -> str:
    """``category`` or ``sub{value}``: the folder of one model of a hierarchy."""
    return "category" if level == "category" else f"sub{int(category_value or 0)}"


def model_prefix(hierarchy_id: str, member: str) -> str:
    return join_key(hierarchy_id, member)


def model_file_key(hierarchy_id: str, member: str, filename: str) -> str:
    return join_key(model_prefix(hierarchy_id, member), filename)


def abundance_model_prefix(model_id: str) -> str:
    return join_key("abundance", safe_key_part(model_id))


# Maps (classification-maps bucket)
def map_prefix(tile: str, map_id: str) -> str:
    return join_key(safe_key_part(tile), map_id)


def map_key(tile: str, map_id: str, output: str, extension: str = ".tif") -> str:
    return join_key(map_prefix(tile, map_id), f"{output}{extension}")


def map_alias_key(tile: str, output: str, extension: str = ".tif") -> str:
    return join_key(LATEST, safe_key_part(tile), f"{output}{extension}")


def blocks_prefix(map_id: str) -> str:
    return join_key(BLOCKS, map_id)


def block_key(prefix: str, output: str, window: str) -> str:
    """One output layer of one classified block (under ``blocks_prefix``): each layer's own
    object, so assembling a layer reads only that layer."""
    return join_key(prefix, output, f"{window}.npz")


def abundance_map_key(map_id: str, filename: str) -> str:
    return join_key("abundance", map_id, filename)


def abundance_alias_key(level: str, filename: str) -> str:
    return join_key(LATEST, "abundance", safe_key_part(level), filename)


# STAC (classification-maps bucket)
def stac_catalog_key() -> str:
    return join_key(STAC_ROOT, "catalog.json")
