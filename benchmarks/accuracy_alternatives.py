"""Ways past the accuracy preset that were measured and not adopted, on the Slovenian patch of
benchmarks/accuracy_slovenia.py: the preset's features (two seasons' medians and indices, NDVI at
6 days per calendar quarter over the whole record, the DEM layers), held-out spatial blocks
(``default_split``, several seeds), every labelled held-out pixel scored. One JSON line per
(seed, experiment), then the means:

    python benchmarks/accuracy_alternatives.py [--seeds 0,1,2,3,4] [--only shift,priors,ensemble]

* ``shift``: the reference map moved by one pixel in each of the 8 directions (train and test
  labels alike) against the imagery: if the map and the scenes were misregistered, a shift
  would score higher than none.
* ``priors``: per-class multipliers of the predicted probabilities, chosen on out-of-fold
  probabilities of the training blocks (4 spatial folds) to maximise kappa, or kappa + macro F1.
* ``ensemble``: LightGBM's probabilities averaged with a random forest's and with a small
  fully convolutional network's (1 x 1 then two 3 x 3 convolutions over the whole patch, loss on
  the training blocks' pixels only, class-balanced, three seeds averaged): spatial context learned
  from the feature images instead of hand-made focal features.

The estimators are the workflow's (``make_estimator``: LightGBM and the random forest with their
default sizes and class weighting), fitted directly, without the spatial CV that sizes forests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import accuracy_slovenia as acc  # noqa: E402

BLOCK = 20  # px: the default split's blocks
SHIFTS = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]


def preset_table(data: Path) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        median = acc.composite_features(Path(tmp), ())
    return pd.concat([median, acc.sampled_ndvi(data, 6, acc.QUARTERS), acc.dem_features(data)], axis=1)


def shifted(labels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[r, c] = labels[r + dy, c + dx]``; 0 (unlabelled) where that falls outside."""
    h, w = labels.shape
    out = np.zeros_like(labels)
    out[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)] = \
        labels[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    return out


class Patch:
    """The feature table on the patch grid and the estimators fitted on chosen pixels."""

    def __init__(self, table: pd.DataFrame, shape: tuple[int, int]) -> None:
        self.x = table.to_numpy("float32")
        self.shape = shape
        rows, cols = np.divmod(np.arange(self.x.shape[0]), shape[1])
        self.block = np.minimum(rows // BLOCK, shape[0] // BLOCK - 1) * (shape[1] // BLOCK) + cols // BLOCK
        mu, sd = np.nanmean(self.x, 0), np.nanstd(self.x, 0) + 1e-6  # the network's standardised input
        self.image = np.nan_to_num((self.x - mu) / sd).T.reshape(1, -1, *shape)

    def proba(self, model_type: str, y: np.ndarray, fit_on: np.ndarray, at: np.ndarray,
              classes: list[int]) -> np.ndarray:
        from landcoverpy.assets.params import ModelParams
        from landcoverpy.models.hierarchical import class_weights, make_estimator

        params = ModelParams(model_type=model_type, seed=7)
        est = make_estimator(params, n_jobs=2)
        est.set_params(class_weight=class_weights(y[fit_on], params.class_weighting))
        est.fit(self.x[fit_on], y[fit_on])
        out = np.zeros((len(at), len(classes)))
        out[:, [classes.index(c) for c in est.classes_]] = est.predict_proba(self.x[at])
        return out

    def fcn_proba(self, y: np.ndarray, fit_on: np.ndarray, classes: list[int], seed: int,
                  epochs: int = 300) -> np.ndarray:
        """Every pixel's class probabilities, (pixels, classes), from a small fully convolutional
        network trained on the pixels ``fit_on`` of the whole patch."""
        import torch
        from torch import nn

        torch.manual_seed(seed)
        z = torch.tensor(self.image)
        index = {c: i for i, c in enumerate(classes)}
        target = torch.tensor(np.array([index.get(int(v), 0) for v in y]).reshape(self.shape))
        mask = torch.tensor(fit_on.reshape(self.shape))
        counts = np.bincount(target.numpy()[fit_on.reshape(self.shape)], minlength=len(classes)).astype(float)
        weight = np.where(counts > 0, counts.sum() / (len(classes) * np.maximum(counts, 1)), 0.0)
        width = 64
        net = nn.Sequential(nn.Conv2d(z.shape[1], width, 1), nn.ReLU(), nn.Dropout2d(0.2),
                            nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                            nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                            nn.Conv2d(width, len(classes), 1))
        opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-3)
        loss = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32))
        for _ in range(epochs):
            net.train()
            opt.zero_grad()
            logits = net(z)[0].permute(1, 2, 0)
            loss(logits[mask], target[mask]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            return torch.softmax(net(z)[0], 0).permute(1, 2, 0).reshape(-1, len(classes)).numpy()


def score(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import cohen_kappa_score, f1_score

    return float(cohen_kappa_score(y, pred)), float(f1_score(y, pred, average="macro"))


def best_multipliers(p: np.ndarray, y: np.ndarray, classes: list[int],
                     metric: Callable[[np.ndarray, np.ndarray], float]) -> np.ndarray:
    """Per-class probability multipliers by coordinate search (3 rounds, e^-2 .. e^2)."""
    w = np.ones(len(classes))
    grid = np.exp(np.linspace(-2, 2, 21))
    for _ in range(3):
        for j in range(len(classes)):
            scores = []
            for g in grid:
                trial = w.copy()
                trial[j] = g
                scores.append(metric(y, np.asarray(classes)[(p * trial).argmax(1)]))
            w[j] = grid[int(np.argmax(scores))]
    return w


def run_seed(patch: Patch, labels: np.ndarray, seed: int, only: set[str]) -> list[dict]:
    split = acc.default_split(labels.shape, seed).ravel()
    out = []

    def emit(experiment: str, kappa_f1: tuple[float, float]) -> None:
        row = {"seed": seed, "experiment": experiment, "kappa": round(kappa_f1[0], 4), "macro_f1": round(kappa_f1[1], 4)}
        out.append(row)
        print(json.dumps(row), flush=True)

    if "shift" in only:
        for dy, dx in SHIFTS:
            y = shifted(labels, dy, dx).ravel()
            train, test = np.flatnonzero((y > 0) & (split == 1)), np.flatnonzero((y > 0) & (split == 2))
            classes = sorted({int(c) for c in y[train]})
            p = patch.proba("lightgbm", y, train, test, classes)
            emit(f"labels shifted by ({dy:+d}, {dx:+d}) px", score(y[test], np.asarray(classes)[p.argmax(1)]))
    y = labels.ravel()
    train, test = np.flatnonzero((y > 0) & (split == 1)), np.flatnonzero((y > 0) & (split == 2))
    classes = sorted({int(c) for c in y[train]})
    lgbm = patch.proba("lightgbm", y, train, test, classes)
    emit("LightGBM (the preset)", score(y[test], np.asarray(classes)[lgbm.argmax(1)]))
    if "priors" in only:
        folds = np.array_split(np.random.default_rng(0).permutation(np.unique(patch.block[train])), 4)
        oof = np.zeros((len(train), len(classes)))
        for fold in folds:
            held = np.isin(patch.block[train], fold)
            oof[held] = patch.proba("lightgbm", y, train[~held], train[held], classes)

        def kappa_plus_f1(a: np.ndarray, b: np.ndarray) -> float:
            return sum(score(a, b))

        for name, metric in (("kappa", lambda a, b: score(a, b)[0]), ("kappa + macro F1", kappa_plus_f1)):
            w = best_multipliers(oof, y[train], classes, metric)
            emit(f"LightGBM, class multipliers for {name} (out-of-fold)",
                 score(y[test], np.asarray(classes)[(lgbm * w).argmax(1)]))
    if "ensemble" in only:
        forest = patch.proba("random_forest", y, train, test, classes)
        fit_on = np.zeros(y.shape, bool)
        fit_on[train] = True
        fcn = np.mean([patch.fcn_proba(y, fit_on, classes, s) for s in range(3)], axis=0)[test]
        for name, p in (("random forest", forest), ("LightGBM + random forest", lgbm + forest),
                        ("convolutional network (3 seeds)", fcn), ("LightGBM + convolutional network", lgbm + fcn),
                        ("LightGBM + random forest + convolutional network", lgbm + forest + fcn)):
            emit(name, score(y[test], np.asarray(classes)[p.argmax(1)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "eolearn-slovenia")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--only", default="shift,priors,ensemble")
    args = ap.parse_args()
    labels = np.load(args.data / "LULC.npy")[..., 0].astype(int)
    acc.patch_lonlat(args.data, labels.shape)  # points the test helpers at --data
    patch = Patch(preset_table(args.data), labels.shape)
    only = set(args.only.split(","))
    rows: dict[str, list[dict]] = defaultdict(list)
    for seed in (int(v) for v in args.seeds.split(",")):
        for row in run_seed(patch, labels, seed, only):
            rows[row["experiment"]].append(row)
    for experiment, found in rows.items():
        print(json.dumps({"experiment": experiment, "mean_kappa": round(float(np.mean([r["kappa"] for r in found])), 4),
                          "mean_macro_f1": round(float(np.mean([r["macro_f1"] for r in found])), 4),
                          "kappa_per_seed": [r["kappa"] for r in found]}))


if __name__ == "__main__":
    main()
