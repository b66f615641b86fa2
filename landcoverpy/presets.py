"""Named bundles of settings (``--preset`` / ``PRESET``) and the choice of one for a run.

A preset sets what it names unless the user set the same variable: explicit settings always win.
Without a choice, seasons that cover a whole year get ``accurate`` (what the accuracy benchmark
on the Slovenian patch found best, see ``docs/science/accuracy.md``), shorter ones ``fast``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from landcoverpy.config import Settings
from landcoverpy.errors import ConfigurationError
from landcoverpy.inputs import Season

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    settings: Mapping[str, Any]


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "fast": Preset(
            "fast",
            "seasonal medians and spectral indices, random forest: the quickest maps, for short seasons",
            MappingProxyType({}),
        ),
        "accurate": Preset(
            "accurate",
            "NDVI sampled at 6 days of every season with pixels cloudy all season filled from the "
            "neighbouring dates, LightGBM; DEM layers whenever DEM_SOURCE is set. Meant for seasons that "
            "cover the period mapped quarter by quarter",
            MappingProxyType({"SERIES_SAMPLES": 6, "COMPOSITE_GAP_FILL": True, "MODEL_TYPE": "lightgbm"}),
        ),
    }
)

# the seasons cover a year when their union holds at least this many days
YEAR_DAYS = 365


def covered_days(seasons: Iterable[Season]) -> int:
    """Days inside at least one season (overlaps counted once)."""
    days: set[dt.date] = set()
    for season in seasons:
        n = (season.end - season.start).days + 1
        days.update(season.start + dt.timedelta(days=i) for i in range(n))
    return len(days)


def default_preset(seasons: Iterable[Season]) -> str:
    """``accurate`` for seasons that cover a year, else ``fast``."""
    return "accurate" if covered_days(seasons) >= YEAR_DAYS else "fast"


def apply_preset(settings: Settings, seasons: Iterable[Season] | None = None) -> Settings:
    """Settings with the chosen preset (``settings.PRESET``, else the default for ``seasons``)
    filled in under the user's own settings; ``PRESET`` of the result names the preset applied."""
    name = settings.PRESET or (default_preset(seasons) if seasons is not None else "fast")
    if name not in PRESETS:  # Settings validates PRESET; this guards direct construction
        raise ConfigurationError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    explicit = settings.model_fields_set - {"PRESET"}
    update: dict[str, Any] = {k: v for k, v in PRESETS[name].settings.items() if k not in explicit}
    if settings.PRESET is None:
        log.info("preset %s (seasons cover %s a year)", name, "at least" if name == "accurate" else "less than")
    return settings.model_copy(update=update | {"PRESET": name})
