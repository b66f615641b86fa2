"""Whittaker-smoothed NDVI samples against the workflow's linear interpolation, on the Slovenian
patch of benchmarks/accuracy_slovenia.py: calendar quarters over the whole record, 6 samples per
quarter, seasonal medians beside them, random forest and LightGBM, over several held-out splits.
One JSON line per (split, model, feature set), then the means:

    python benchmarks/accuracy_smoothing.py [--seeds 0,1,2,3,4] [--lambdas 10,100,1000]

The smoother (Eilers 2003): on a daily grid of the quarter, minimise sum w_t (y_t - z_t)^2 +
lambda sum (second difference of z)^2 with w_t = 1 on each pixel's clear dates (spikes dropped
as the workflow drops them) and 0 elsewhere; beyond the first and last clear date the curve is held
constant, as the linear interpolation is. Not in the workflow: it gained too little (README).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import accuracy_slovenia as acc  # noqa: E402

CHUNK = 500  # pixels solved at once: CHUNK x days^2 float64 (~34 MB for a 92-day quarter)


def whittaker_samples(stack: np.ndarray, days: np.ndarray, season_days: int, lam: float, at: np.ndarray) -> np.ndarray:
    """``stack``: (dates, pixels) NDVI with NaN gaps at whole ``days`` in [0, season_days];
    returns the smoothed curve at the days ``at`` (linear between grid days), (len(at), pixels)."""
    n = season_days + 1
    d2 = np.diff(np.eye(n), 2, axis=0)
    penalty = lam * d2.T @ d2
    grid = np.arange(n)
    index = np.asarray(days, dtype=int)
    out = np.full((len(at), stack.shape[1]), np.nan, np.float32)
    lo = np.floor(at).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = at - lo
    for c0 in range(0, stack.shape[1], CHUNK):
        y = stack[:, c0 : c0 + CHUNK].astype(np.float64)
        ok = np.isfinite(y)
        w = np.zeros((y.shape[1], n))
        wy = np.zeros((y.shape[1], n))
        for i, day in enumerate(index):
            w[:, day] += ok[i]
            wy[:, day] += np.where(ok[i], y[i], 0.0)
        seen = w > 0
        count = seen.sum(axis=1)
        z = np.full((y.shape[1], n), np.nan)
        solvable = count >= 2  # two clear days pin the penalty's null space (straight lines)
        if solvable.any():
            a = penalty[None] + w[solvable][:, :, None] * np.eye(n)[None]
            z[solvable] = np.linalg.solve(a, wy[solvable][..., None])[..., 0]
        single = count == 1
        z[single] = (wy[single].sum(axis=1) / w[single].sum(axis=1))[:, None]
        first = np.where(count > 0, seen.argmax(axis=1), 0)
        last = np.where(count > 0, n - 1 - seen[:, ::-1].argmax(axis=1), n - 1)
        rows = np.arange(len(z))
        z = np.where(grid < first[:, None], z[rows, first][:, None], z)
        z = np.where(grid > last[:, None], z[rows, last][:, None], z)
        out[:, c0 : c0 + CHUNK] = ((1 - frac)[:, None] * z[:, lo].T + frac[:, None] * z[:, hi].T).astype(np.float32)
    return out


def smoothed_ndvi(data: Path, lam: float, samples: int = 6) -> pd.DataFrame:
    from landcoverpy.raster.timeseries import sample_days, sample_layers

    ndvi, dates = acc._masked_ndvi(data)
    cols = {}
    for name, start, end in acc.QUARTERS:
        stack, days, inside = acc._season_ndvi(ndvi, dates, start, end)
        kept, days = stack[:inside], days[:inside]  # the season's own dates (no fill from the neighbours)
        season_days = (end - start).days
        values = whittaker_samples(
            kept.reshape(len(kept), -1), days, season_days, lam, sample_days(season_days, samples)
        )
        for layer, arr in zip(sample_layers(samples), values):
            cols[f"whittaker{lam:g}_{name}_{layer}"] = arr
    return pd.DataFrame(cols)


def main() -> None:
    from landcoverpy.assets.params import ModelParams

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "eolearn-slovenia")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--lambdas", default="10,100,1000")
    args = ap.parse_args()
    labels = np.load(args.data / "LULC.npy")[..., 0].astype(int)
    lonlat = acc.patch_lonlat(args.data, labels.shape)
    with tempfile.TemporaryDirectory() as tmp:
        median = acc.composite_features(Path(tmp), ())
    linear = acc.sampled_ndvi(args.data, 6, acc.QUARTERS)
    sets = {"linear (SERIES_SAMPLES=6)": list(linear.columns)}
    frames = [median, linear]
    for lam in (float(v) for v in args.lambdas.split(",")):
        frame = smoothed_ndvi(args.data, lam)
        frames.append(frame)
        sets[f"whittaker lambda={lam:g}"] = list(frame.columns)
    table = pd.concat(frames, axis=1)
    base = ModelParams(block_km=0.2, folds=4, seed=7, min_class_points=3)
    scores: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for seed in (int(v) for v in args.seeds.split(",")):
        split = acc.default_split(labels.shape, seed)
        for model in ("random_forest", "lightgbm"):
            params = replace(base, model_type=model)
            for name, features in sets.items():
                r = acc.evaluate(name, table, list(median.columns) + features, labels, split, params, lonlat)
                scores[(model, name)].append((r["kappa"], r["macro_f1"]))
                print(
                    json.dumps(
                        {"seed": seed, "model": model, "features": name, "kappa": r["kappa"], "macro_f1": r["macro_f1"]}
                    ),
                    flush=True,
                )
    for (model, name), values in scores.items():
        k, f = np.mean(values, axis=0)
        print(
            json.dumps(
                {
                    "model": model,
                    "features": name,
                    "mean_kappa": round(float(k), 4),
                    "mean_macro_f1": round(float(f), 4),
                    "kappa_per_split": [v[0] for v in values],
                }
            )
        )


if __name__ == "__main__":
    main()
