"""A MODIS-like time series as rasters: the manifest of dated rasters and its aggregation into
steps on a grid (per step, the median of the valid observations; NaN where none, a gap that
BRITS imputes). Grid IO only: the abundance stages (dataset, predict, impute) all read series
through here."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from landcoverpy.errors import InputValidationError
from landcoverpy.raster.ancillary import read_on_grid
from landcoverpy.raster.grid import Grid


@dataclass(frozen=True)
class SeriesItem:
    date: dt.date
    path: str


def load_series_manifest(path: str | Path) -> list[SeriesItem]:
    """JSON list of ``{"date": "YYYY-MM-DD", "path": "..."}`` (paths relative to the manifest)."""
    path = Path(path)
    try:
        items = json.loads(path.read_text())
        out = []
        for item in items:
            raw = str(item["path"])
            p = Path(raw)
            full = raw if "://" in raw or p.is_absolute() else str(path.parent / p)  # s3:// paths kept
            out.append(SeriesItem(dt.date.fromisoformat(item["date"]), full))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputValidationError(f"{path}: invalid time-series manifest ({type(exc).__name__}: {exc})") from None
    if not out:
        raise InputValidationError(f"{path}: the time-series manifest is empty")
    return sorted(out, key=lambda s: s.date)


def aggregate_series(
    items: list[SeriesItem], grid: Grid, steps: list[tuple[dt.date, dt.date]], window: Window | None = None
) -> np.ndarray:
    """(pixels, steps, bands): per step, the median of the valid observations in it (NaN when
    none: a gap BRITS imputes)."""
    win = window or Window(0, 0, grid.width, grid.height)
    per_step: list[np.ndarray] = []
    n_bands = None
    for start, end in steps:
        obs = [read_on_grid(it.path, grid, Resampling.nearest, window=win) for it in items if start <= it.date <= end]
        if obs:
            n_bands = obs[0].shape[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                per_step.append(np.nanmedian(np.stack(obs), axis=0))
        else:
            per_step.append(None)  # type: ignore[arg-type]
    if n_bands is None:
        raise InputValidationError("no time-series observation falls in any step of the requested year")
    h, w = int(win.height), int(win.width)
    filled = [s if s is not None else np.full((n_bands, h, w), np.nan, "float32") for s in per_step]
    return np.stack(filled).reshape(len(steps), n_bands, -1).transpose(2, 0, 1).astype("float32")
