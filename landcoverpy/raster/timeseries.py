"""Time-series features of a season from every valid date, on arrays: how much the vegetation
changes (NDVI amplitude), in which direction (least-squares NDVI slope per day) and when it
peaks (day of the season with the highest NDVI). They separate classes a median cannot: a
mown meadow and a forest share a median NDVI, not an amplitude.

Input: ``(dates, rows, cols)`` NDVI with NaN gaps and each date's day offset in the season.
"""

from __future__ import annotations

import warnings

import numpy as np

FEATURES = ("ndvi_amplitude", "ndvi_slope", "ndvi_peak_day")


def series_features(ndvi: np.ndarray, days: np.ndarray) -> dict[str, np.ndarray]:
    """``ndvi_amplitude`` = max - min over valid dates (0 with one date); ``ndvi_slope`` =
    least-squares slope of NDVI against the day (0 with one date: no change seen, and the pixel
    stays classifiable wherever its season has a median); ``ndvi_peak_day`` = day of the highest
    NDVI (the first on ties). All three are NaN without a valid date (the pixel has no data)."""
    if ndvi.ndim != 3 or ndvi.shape[0] != len(days):
        raise ValueError("expected (dates, rows, cols) NDVI and one day per date")
    x = np.asarray(ndvi, dtype=np.float64)
    valid = np.isfinite(x)
    n = valid.sum(axis=0)
    t = np.asarray(days, dtype=np.float64)[:, None, None] * valid
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        amplitude = np.nanmax(x, axis=0) - np.nanmin(x, axis=0)
        t_mean = t.sum(axis=0) / n
        x_mean = np.nansum(x, axis=0) / n
        dt = np.where(valid, t - t_mean, 0.0)
        dx = np.where(valid, x - x_mean, 0.0)
        denom = (dt * dt).sum(axis=0)
        slope = np.where(denom > 0, (dt * dx).sum(axis=0) / denom, np.where(n > 0, 0.0, np.nan))
    filled = np.where(valid, x, -np.inf)
    peak = np.asarray(days, dtype=np.float64)[np.argmax(filled, axis=0)]
    out = {"ndvi_amplitude": amplitude, "ndvi_slope": slope, "ndvi_peak_day": np.where(n > 0, peak, np.nan)}
    return {k: v.astype(np.float32) for k, v in out.items()}
