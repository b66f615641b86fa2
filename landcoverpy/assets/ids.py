"""Asset ids. Every id is a readable prefix plus a digest of a canonical JSON payload holding
the ids of the asset's inputs, every parameter that changes its content and a format version
(bumped whenever the content an id stands for changes for the same inputs).

Label and season names are data: they enter payloads as exact Unicode strings and never become
the id's readable part, so two names never share an id whatever their spelling.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import pandas as pd

from landcoverpy.inputs import Season
from landcoverpy.records import ProductRecord

# Format versions, one per kind.
COMPOSITE_FORMAT = 2
SERIES_FORMAT = 2  # time-series layers; 2: slope 0 (not NaN) with a single valid date
SAMPLES_FORMAT = 2  # NDVI samples (SERIES_SAMPLES); 2: a pixel cloudy all season is filled from the series neighbours
DEM_FORMAT = 3  # 3: slope and aspect on the tile's outermost pixels too (halo read beyond the grid)
DATASET_FORMAT = 2
HIERARCHY_FORMAT = 2
MAP_FORMAT = 4  # 3: QGIS styles and GDAL category names; 4: sl_confidence and uncertainty layers
ABUNDANCE_MODEL_FORMAT = 1
ABUNDANCE_MAP_FORMAT = 2  # 2: QGIS styles and GDAL category names


class HasIdentity(Protocol):
    def identity(self) -> dict[str, Any]: ...


def digest(payload: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def season_identity(season: Season) -> list[str]:
    return [season.name, season.start.isoformat(), season.end.isoformat()]


def window_tag(bounds: Iterable[float]) -> str:
    """A product cut to a window (acquired for an area of interest): ``w{left}_{bottom}_{right}_{top}``
    in whole metres of the tile's CRS."""
    return "w" + "_".join(str(int(round(v))) for v in bounds)


def product_content_id(record: ProductRecord | Mapping[str, Any]) -> str:
    """What a stored product holds: its id, plus the window it was cut to (an area-of-interest
    acquisition) so composites and cloud masks of a partial product are never taken for those of
    the whole one. Whole products keep their bare id. A product being stored is still a document."""
    if isinstance(record, ProductRecord):
        pid, window = record.id, record.window
    else:
        pid, window = str(record["_id"]), record.get("window")
    return f"{pid}@{window_tag(window['bounds'])}" if window else pid


def composite_id(
    tile: str, season: Season, product_ids: Iterable[str], params: HasIdentity, neighbour_ids: Iterable[str] = ()
) -> str:
    """``neighbour_ids``: products just outside the season that its series layers look at (see
    :func:`landcoverpy.assets.lookup.series_neighbours`); absent from the payload when none, so
    composites without them keep their ids."""
    payload = {
        "kind": "composite",
        "tile": tile,
        "season": season_identity(season),
        "products": sorted(product_ids),
        "params": params.identity(),
        "format": COMPOSITE_FORMAT,
    }
    neighbours = sorted(neighbour_ids)
    if neighbours:
        payload["series_neighbours"] = neighbours
    return f"composite-{tile}-{digest(payload)}"


def dem_id(tile: str, grid: Mapping[str, Any], source_keys: Iterable[str]) -> str:
    payload = {"kind": "dem", "tile": tile, "grid": dict(grid), "sources": sorted(source_keys), "format": DEM_FORMAT}
    return f"dem-{tile}-{digest(payload)}"


def points_digest(points: pd.DataFrame) -> str:
    """Digest of the labelled points exactly as validated (coordinates and label names)."""
    cols = points[["latitude", "longitude", "category", "subcategory"]]
    return hashlib.sha256(pd.util.hash_pandas_object(cols, index=False).values.tobytes()).hexdigest()


def dataset_id(points: pd.DataFrame, source_ids: Iterable[str], neighbourhood: int) -> str:
    payload = {
        "kind": "dataset",
        "points": points_digest(points),
        "sources": sorted(source_ids),
        "neighbourhood": neighbourhood,
        "format": DATASET_FORMAT,
    }
    return f"dataset-{digest(payload)}"


def hierarchy_id(
    dataset: str, params: HasIdentity, lc_labels: Mapping[str, int], sl_labels: Mapping[str, int], subcategories: bool
) -> str:
    payload = {
        "kind": "hierarchy",
        "dataset": dataset,
        "params": params.identity(),
        "lc": sorted(lc_labels.items()),
        "sl": sorted(sl_labels.items()),
        "sub": subcategories,
        "format": HIERARCHY_FORMAT,
    }
    return f"hierarchy-{digest(payload)}"


def model_id(hierarchy: str, level: str, category_value: int | None) -> str:
    """A member model of a hierarchy: ``{hierarchy}:category`` or ``{hierarchy}:sub{value}``
    (the parent category's map value, unique by validation of the label file)."""
    return f"{hierarchy}:category" if level == "category" else f"{hierarchy}:sub{int(category_value or 0)}"


def map_id(hierarchy: str, tile: str, source_ids: Iterable[str], options: Mapping[str, Any] | None = None) -> str:
    """Derived from the model, the feature sources and the output options (which layers are
    written); the block size does not change a map."""
    payload = {
        "kind": "map",
        "hierarchy": hierarchy,
        "tile": tile,
        "sources": sorted(source_ids),
        "options": dict(options or {}),
        "format": MAP_FORMAT,
    }
    return f"map-{tile}-{digest(payload)}"


def change_id(before: str, after: str, level: str, tile: str, area_wkb: str | None = None) -> str:
    """The change product between two maps at one level (within an area, given as hex WKB)."""
    payload = {"kind": "change", "from": before, "to": after, "level": level, "area": area_wkb}
    return f"change-{tile}-{digest(payload)}"


def abundance_dataset_id(year: int, table_sha256: str) -> str:
    """Content-addressed: the inputs are user rasters whose content the table captures."""
    return f"abundance-{year}-{table_sha256[:16]}"


def abundance_model_id(level: str, dataset: str, params: Mapping[str, Any], base_model: str | None) -> str:
    payload = {
        "kind": "abundance-model",
        "level": level,
        "dataset": dataset,
        "params": dict(params),
        "base": base_model,
        "format": ABUNDANCE_MODEL_FORMAT,
    }
    return f"abundance-{level}-{digest(payload)}"


def abundance_series_id(model: str, dataset: str) -> str:
    """The gap-filled series a model makes of a dataset's time series."""
    payload = {"kind": "abundance-series", "model": model, "dataset": dataset, "format": ABUNDANCE_MAP_FORMAT}
    return f"abundance-series-{digest(payload)}"


def abundance_map_id(level: str, model: str, dataset: str) -> str:
    payload = {
        "kind": "abundance-map",
        "level": level,
        "model": model,
        "dataset": dataset,
        "format": ABUNDANCE_MAP_FORMAT,
    }
    return f"abundance-map-{level}-{digest(payload)}"
