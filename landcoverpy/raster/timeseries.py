"""Time-series features of a season from every valid date, on arrays: how much the vegetation
changes (NDVI amplitude), in which direction (least-squares NDVI slope per day) and when it
peaks (day of the season with the highest NDVI). They separate classes a median cannot: a
mown meadow and a forest share a median NDVI, not an amplitude.

It also resamples a season's NDVI onto evenly spaced days (:func:`sample_days`,
:func:`interpolated_ndvi`): the curve itself as features, comparable across pixels whatever dates
their clouds left, as eo-learn's land-cover pipeline does over a whole year.

Input: ``(dates, rows, cols)`` NDVI with NaN gaps and each date's day offset in the season.
"""

from __future__ import annotations

import warnings

import numpy as np

FEATURES = ("ndvi_amplitude", "ndvi_slope", "ndvi_peak_day")
SPIKE_DELTA = 0.05  # default: NDVI this far below both valid neighbours is a missed cloud or shadow


def sample_layers(samples: int) -> list[str]:
    """Layer names of ``samples`` interpolated NDVI values: ``ndvi_t0`` (the season's first day)
    ... ``ndvi_t{samples-1}`` (its last day)."""
    return [f"ndvi_t{i}" for i in range(samples)]


def sample_days(season_days: int, samples: int) -> np.ndarray:
    """``samples`` evenly spaced day offsets from 0 (the season's first day) to ``season_days``
    (its last day), both included."""
    if samples < 2:
        raise ValueError("at least two samples per season (its first and last day)")
    return np.linspace(0.0, float(season_days), samples)


def drop_spikes(ndvi: np.ndarray, days: np.ndarray, delta: float) -> np.ndarray:
    """``ndvi`` with its downward spikes as gaps (NaN): a valid date whose NDVI is more than
    ``delta`` below both the previous and the next valid date of the same pixel. Cloud edges, thin
    clouds and shadows that the cloud mask missed show as such one-date dips; vegetation does not
    drop and recover within days. The first and last valid dates are kept (one neighbour only);
    ``delta`` <= 0 returns the input unchanged. Returns float32, the input untouched."""
    if ndvi.ndim != 3 or ndvi.shape[0] != len(days):
        raise ValueError("expected (dates, rows, cols) NDVI and one day per date")
    out = np.array(ndvi, dtype=np.float32)
    if delta <= 0 or len(days) < 3:
        return out
    order = np.argsort(np.asarray(days, dtype=np.float64), kind="stable")
    before = np.empty(out.shape, np.float32)  # previous valid NDVI of each date, by time
    last = np.full(out.shape[1:], np.nan, np.float32)
    for i in order:
        before[i] = last
        last = np.where(np.isfinite(out[i]), out[i], last)
    last = np.full(out.shape[1:], np.nan, np.float32)
    for i in order[::-1]:  # next valid NDVI: compared on the fly, nothing more kept
        x = out[i]
        with np.errstate(invalid="ignore"):
            spike = (x < before[i] - delta) & (x < last - delta)
        last = np.where(np.isfinite(x), x, last)
        out[i] = np.where(spike, np.nan, x)
    return out


def interpolated_ndvi(ndvi: np.ndarray, days: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Each pixel's NDVI at the days ``at``, interpolated linearly between its nearest valid dates
    before and after (``np.interp`` per pixel: constant beyond its first and last valid date; NaN
    without any valid date). ``days``: each date's day offset, in any order. Returns ``(len(at),
    rows, cols)`` float32. Two passes over the dates (forward for the previous valid value, backward
    for the next), whatever the number of sample days."""
    if ndvi.ndim != 3 or ndvi.shape[0] != len(days):
        raise ValueError("expected (dates, rows, cols) NDVI and one day per date")
    order = np.argsort(np.asarray(days, dtype=np.float64), kind="stable")
    t = np.asarray(days, dtype=np.float64)[order]
    at = np.asarray(at, dtype=np.float64)
    shape = ndvi.shape[1:]
    prev_v, prev_t = [], []
    # kept as float32 (exact: NDVI is float32, days are whole numbers); arithmetic in float64
    value, day = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
    i = 0
    for s in np.sort(at):  # the last valid date on or before each sample day
        while i < len(t) and t[i] <= s:
            x = np.asarray(ndvi[order[i]], dtype=np.float32)
            ok = np.isfinite(x)
            value, day = np.where(ok, x, value), np.where(ok, np.float32(t[i]), day)
            i += 1
        prev_v.append(value)
        prev_t.append(day)
    next_v, next_t = [], []
    value, day = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
    i = len(t) - 1
    for s in np.sort(at)[::-1]:  # the first valid date on or after each sample day
        while i >= 0 and t[i] >= s:
            x = np.asarray(ndvi[order[i]], dtype=np.float32)
            ok = np.isfinite(x)
            value, day = np.where(ok, x, value), np.where(ok, np.float32(t[i]), day)
            i -= 1
        next_v.append(value)
        next_t.append(day)
    next_v, next_t = next_v[::-1], next_t[::-1]
    out = np.empty((len(at), *shape), dtype=np.float32)
    rank = np.argsort(np.argsort(at, kind="stable"), kind="stable")
    for k, s in enumerate(at):
        j = rank[k]
        pv, pt = prev_v[j].astype(np.float64), prev_t[j].astype(np.float64)
        nv, nt = next_v[j].astype(np.float64), next_t[j].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(nt > pt, (s - pt) / (nt - pt), 0.0)
        both = np.isfinite(pv) & np.isfinite(nv)
        out[k] = np.where(both, pv + w * (nv - pv), np.where(np.isfinite(pv), pv, nv))
    return out


def season_samples(ndvi: np.ndarray, days: np.ndarray, inside: int, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The season's NDVI at the days ``at``, gaps filled from the dates around the season.

    ``ndvi`` stacks the season's own ``inside`` dates first, then dates just outside it (the
    series neighbours, before and after, in any order); ``days`` are day offsets from the
    season's first day (negative before it). A pixel with a valid date inside the season is
    interpolated from those dates alone (:func:`interpolated_ndvi`: the neighbours never bend a
    curve the season itself shows). A pixel with no valid date inside (cloudy on every date of the
    season) is interpolated from the outside dates instead: linearly between the last clear date
    before and the first after, or constant from the one side that has one; it stays NaN only
    when no date at all is valid. Returns ``(len(at), rows, cols)`` float32 and the ``(rows, cols)``
    mask of the pixels filled from outside."""
    if ndvi.ndim != 3 or ndvi.shape[0] != len(days) or not 0 <= inside <= len(days):
        raise ValueError("expected (dates, rows, cols) NDVI, one day per date and 0 <= inside <= dates")
    own = interpolated_ndvi(ndvi[:inside], np.asarray(days)[:inside], at)
    empty = ~np.isfinite(ndvi[:inside]).any(axis=0) if inside else np.ones(ndvi.shape[1:], dtype=bool)
    filled = empty & np.isfinite(ndvi[inside:]).any(axis=0)
    if not filled.any():
        return own, filled
    rows, cols = np.nonzero(filled)
    # only the empty pixels, as one row: the outside dates never touch the others
    outside = interpolated_ndvi(ndvi[inside:, rows, cols][:, None, :], np.asarray(days)[inside:], at)[:, 0, :]
    own[:, rows, cols] = outside
    return own, filled


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
