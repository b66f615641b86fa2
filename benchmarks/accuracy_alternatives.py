"""Ways past the accuracy preset that were measured and not adopted, on the Slovenian patch of
benchmarks/accuracy_slovenia.py: the preset's features (two seasons' medians and indices, NDVI at
6 days per calendar quarter over the whole record, the DEM layers), held-out spatial blocks
(``default_split``, several seeds), every labelled held-out pixel scored. One JSON line per
(seed, experiment), then the means:

    python benchmarks/accuracy_alternatives.py [--seeds 0,1,2,3,4]
        [--only shift,priors,ensemble,unmix,ridges,fractions,selftrain,stack,ceiling]

* ``shift``: the reference map moved by one pixel in each of the 8 directions (train and test
  labels alike) against the imagery: if the map and the scenes were misregistered, a shift
  would score higher than none.
* ``priors``: per-class multipliers of the predicted probabilities, chosen on out-of-fold
  probabilities of the training blocks (4 spatial folds) to maximise kappa, or kappa + macro F1.
* ``ensemble``: LightGBM's probabilities averaged with a random forest's and with a small
  fully convolutional network's (1 x 1 then two 3 x 3 convolutions over the whole patch, loss on
  the training blocks' pixels only, class-balanced, three seeds averaged): spatial context learned
  from the feature images instead of hand-made focal features.
* ``unmix``: each pixel unmixed between "pure" neighbours (fully constrained least squares on the
  standardised median and NDVI features; one end member per class, the mean of the pixels within
  2 px that LightGBM gives that class with probability > 0.7), the fractions averaged with
  LightGBM's probabilities: a boundary pixel goes to the parcel covering most of it, as the
  reference map gives it the one holding its centre. Also on top of the ``ensemble``'s network.
* ``ridges``: line-detector features for the thin parcels (hedgerows, roads) that make most of
  shrubland's and artificial land's held-out pixels: per direction (4), twice a pixel's value
  minus its two neighbours' at 1 and 2 px, the maximum and minimum over directions, of the late
  season's B04, B08 and B11 medians.
* ``fractions``: training on each pixel's class fractions (the reference polygons rasterised at
  1 m, each class's share of the 10 m pixel as a sample weight) instead of the class at its centre.
* ``selftrain``: LightGBM refitted with its own confident predictions (probability > 0.9, weight
  0.5) on every pixel outside the training blocks (transductive self-training).
* ``stack``: all of them at once: LightGBM with the ridge features, self-trained, averaged with
  the network, then with the unmixing (do the gains add up?).
* ``ceiling``: how far these features can go on this patch, three ways. (1) Labelled neighbours:
  a random half of the held-out pixels joins the training pixels and the other half is scored,
  next to the preset's model scored on that same half: every scored pixel then has labelled
  pixels of its own parcel beside it, an upper bound that no model trained on other blocks
  reaches. (2) A learning curve: the preset's model trained on 5, 9 and 13 of the training blocks
  (3 random draws each) and on all of them, scored on the same held-out blocks: how much more
  labelled data of the same kind would be worth. (3) The reference map against its own polygons:
  each pixel given the class covering most of its 10 m footprint (1 m rasterisation), scored
  against the class at its centre: whether the labels themselves are ambiguous at 10 m.

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
    out[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)] = labels[
        max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)
    ]
    return out


class Patch:
    """The feature table on the patch grid and the estimators fitted on chosen pixels."""

    def __init__(self, table: pd.DataFrame, shape: tuple[int, int]) -> None:
        self.x = table.to_numpy("float32")
        self.shape = shape
        rows, cols = np.divmod(np.arange(self.x.shape[0]), shape[1])
        self.block = np.minimum(rows // BLOCK, shape[0] // BLOCK - 1) * (shape[1] // BLOCK) + cols // BLOCK
        mu, sd = np.nanmean(self.x, 0), np.nanstd(self.x, 0) + 1e-6  # the network's standardised input
        z = np.nan_to_num((self.x - mu) / sd)
        self.image = z.T.reshape(1, -1, *shape)
        self.spectral = z[:, [not c.startswith("dem_") for c in table.columns]]  # what unmixing rebuilds
        self.table = table

    def proba(
        self, model_type: str, y: np.ndarray, fit_on: np.ndarray, at: np.ndarray, classes: list[int]
    ) -> np.ndarray:
        from landcoverpy.assets.params import ModelParams
        from landcoverpy.models.hierarchical import class_weights, make_estimator

        params = ModelParams(model_type=model_type, seed=7)
        est = make_estimator(params, n_jobs=2)
        est.set_params(class_weight=class_weights(y[fit_on], params.class_weighting))
        est.fit(self.x[fit_on], y[fit_on])
        out = np.zeros((len(at), len(classes)))
        out[:, [classes.index(c) for c in est.classes_]] = est.predict_proba(self.x[at])
        return out

    def predict(self, y: np.ndarray, fit_on: np.ndarray, at: np.ndarray) -> np.ndarray:
        """The classes LightGBM fitted on the pixels ``fit_on`` (over the classes found there) gives
        the pixels ``at``."""
        classes = sorted({int(c) for c in y[fit_on]})
        return np.asarray(classes)[self.proba("lightgbm", y, fit_on, at, classes).argmax(1)]

    def fcn_proba(
        self, y: np.ndarray, fit_on: np.ndarray, classes: list[int], seed: int, epochs: int = 300
    ) -> np.ndarray:
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
        net = nn.Sequential(
            nn.Conv2d(z.shape[1], width, 1),
            nn.ReLU(),
            nn.Dropout2d(0.2),
            nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect"),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, padding_mode="reflect"),
            nn.ReLU(),
            nn.Conv2d(width, len(classes), 1),
        )
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


def unmixed(
    p: np.ndarray, z: np.ndarray, shape: tuple[int, int], radius: int = 2, confident: float = 0.7, min_pixels: int = 3
) -> np.ndarray:
    """Per pixel, the class fractions that best rebuild its features ``z`` (pixels, features) from
    its neighbours' class means (the pixel itself left out; fully constrained: >= 0 and summing to
    1, by NNLS with a heavily weighted sum-to-one row); ``p`` where fewer than two classes have
    pure neighbours."""
    from scipy.optimize import nnls

    h, w = shape
    pred, conf = p.argmax(1).reshape(shape), p.max(1).reshape(shape)
    img = z.reshape(h, w, -1)
    out = p.copy()
    for i in range(h):
        for j in range(w):
            rows, cols = slice(max(i - radius, 0), i + radius + 1), slice(max(j - radius, 0), j + radius + 1)
            pure = conf[rows, cols] > confident
            pure[i - rows.start, j - cols.start] = False  # the pixel itself is the mixture
            ends, ks = [], []
            for k in range(p.shape[1]):
                m = pure & (pred[rows, cols] == k)
                if m.sum() >= min_pixels:
                    ends.append(img[rows, cols][m].mean(0))
                    ks.append(k)
            if len(ks) < 2:
                continue
            a = np.vstack([np.array(ends).T, np.full(len(ks), 10.0)])
            f, _ = nnls(a, np.concatenate([img[i, j], [10.0]]))
            out[i * w + j] = 0.0
            out[i * w + j, ks] = f / max(f.sum(), 1e-9)
    return out


def ridge_features(
    table: pd.DataFrame,
    shape: tuple[int, int],
    layers: tuple[str, ...] = ("late_summer_B04", "late_summer_B08", "late_summer_B11"),
) -> np.ndarray:
    """(pixels, 4 x len(layers)): per layer and scale (1, 2 px), the maximum and minimum over the
    4 directions of ``2 v - v(-d) - v(+d)`` (ridges and valleys: thin features)."""
    out = []
    for name in layers:
        img = np.pad(table[name].to_numpy("float64").reshape(shape), 2, mode="reflect")
        h, w = shape
        core = img[2 : 2 + h, 2 : 2 + w]
        for s in (1, 2):
            v = np.array(
                [
                    2 * core
                    - img[2 + dy * s : 2 + dy * s + h, 2 + dx * s : 2 + dx * s + w]
                    - img[2 - dy * s : 2 - dy * s + h, 2 - dx * s : 2 - dx * s + w]
                    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1))
                ]
            )
            out += [v.max(0).ravel(), v.min(0).ravel()]
    return np.stack(out, 1).astype("float32")


def class_fractions(data: Path, shape: tuple[int, int], classes: list[int], factor: int = 10) -> np.ndarray:
    """(pixels, classes): each class's share of each pixel in the reference polygons (LULC.gpkg)
    rasterised ``factor`` x finer."""
    import pyogrio.raw
    import rasterio.features
    import rasterio.transform
    import shapely

    meta, _, wkb, fields = pyogrio.raw.read(data / "LULC.gpkg")
    ids = fields[list(meta["fields"]).index("LULC_ID")]
    ring = np.array(json.loads((data / "bbox.geojson").read_text())["coordinates"][0])
    h, w = shape
    transform = rasterio.transform.from_bounds(*ring.min(0), *ring.max(0), w * factor, h * factor)
    fine = rasterio.features.rasterize(
        zip(shapely.from_wkb(wkb), ids), out_shape=(h * factor, w * factor), transform=transform, fill=0, dtype="uint16"
    )
    return np.stack([(fine == c).reshape(h, factor, w, factor).mean((1, 3)).ravel() for c in classes], 1)


def weighted_lgbm(x: np.ndarray, y: np.ndarray, weight: np.ndarray, at: np.ndarray, classes: list[int]) -> np.ndarray:
    """The workflow's LightGBM fitted on rows ``x`` with sample weights, classes balanced on the
    weights' totals; the probabilities of the rows ``at`` (rows, classes)."""
    from landcoverpy.assets.params import ModelParams
    from landcoverpy.models.hierarchical import make_estimator

    totals = {c: weight[y == c].sum() for c in np.unique(y)}
    balance = np.array([weight.sum() / (len(totals) * totals[c]) for c in y])
    est = make_estimator(ModelParams(model_type="lightgbm", seed=7), n_jobs=2)
    est.set_params(class_weight=None)
    est.fit(x, y, sample_weight=weight * balance)
    out = np.zeros((len(at), len(classes)))
    out[:, [classes.index(c) for c in est.classes_]] = est.predict_proba(at)
    return out


def self_trained(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    unlabelled: np.ndarray,
    first: np.ndarray,
    classes: list[int],
    sure: float = 0.9,
    weight: float = 0.5,
) -> np.ndarray:
    """Every pixel's probabilities from LightGBM refitted on the training pixels plus the pixels
    ``unlabelled`` (mask) where ``first`` (every pixel's probabilities) exceeds ``sure``, labelled
    with its class at ``weight``."""
    confident = np.flatnonzero(unlabelled & (first.max(1) > sure))
    rows = np.concatenate([train, confident])
    pseudo = np.concatenate([y[train], np.asarray(classes)[first[confident].argmax(1)]])
    weights = np.concatenate([np.ones(len(train)), np.full(len(confident), weight)])
    return weighted_lgbm(x[rows], pseudo, weights, x, classes)


def score(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import cohen_kappa_score, f1_score

    return float(cohen_kappa_score(y, pred)), float(f1_score(y, pred, average="macro"))


def best_multipliers(
    p: np.ndarray, y: np.ndarray, classes: list[int], metric: Callable[[np.ndarray, np.ndarray], float]
) -> np.ndarray:
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


def run_seed(patch: Patch, labels: np.ndarray, seed: int, only: set[str], data: Path) -> list[dict]:
    split = acc.default_split(labels.shape, seed).ravel()
    out = []

    def emit(experiment: str, kappa_f1: tuple[float, float]) -> None:
        row = {
            "seed": seed,
            "experiment": experiment,
            "kappa": round(kappa_f1[0], 4),
            "macro_f1": round(kappa_f1[1], 4),
        }
        out.append(row)
        print(json.dumps(row), flush=True)

    if "shift" in only:
        for dy, dx in SHIFTS:
            y = shifted(labels, dy, dx).ravel()
            train, test = np.flatnonzero((y > 0) & (split == 1)), np.flatnonzero((y > 0) & (split == 2))
            emit(f"labels shifted by ({dy:+d}, {dx:+d}) px", score(y[test], patch.predict(y, train, test)))
    y = labels.ravel()
    train, test = np.flatnonzero((y > 0) & (split == 1)), np.flatnonzero((y > 0) & (split == 2))
    classes = sorted({int(c) for c in y[train]})
    names = np.asarray(classes)
    everywhere = patch.proba("lightgbm", y, train, np.arange(len(y)), classes)  # every pixel: unmixing needs neighbours
    lgbm = everywhere[test]
    emit("LightGBM (the preset)", score(y[test], names[lgbm.argmax(1)]))
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
            emit(f"LightGBM, class multipliers for {name} (out-of-fold)", score(y[test], names[(lgbm * w).argmax(1)]))
    fcn = None
    if only & {"ensemble", "stack"}:
        fit_on = np.zeros(y.shape, bool)
        fit_on[train] = True
        fcn = np.mean([patch.fcn_proba(y, fit_on, classes, s) for s in range(3)], axis=0)
    if "ensemble" in only:
        assert fcn is not None
        forest = patch.proba("random_forest", y, train, test, classes)
        for name, p in (
            ("random forest", forest),
            ("LightGBM + random forest", lgbm + forest),
            ("convolutional network (3 seeds)", fcn[test]),
            ("LightGBM + convolutional network", lgbm + fcn[test]),
            ("LightGBM + random forest + convolutional network", lgbm + forest + fcn[test]),
        ):
            emit(name, score(y[test], names[p.argmax(1)]))
    if "unmix" in only:
        bases = [("LightGBM", everywhere)] + (
            [] if fcn is None else [("LightGBM + convolutional network", (everywhere + fcn) / 2)]
        )
        for name, p in bases:
            mixed = (p + unmixed(p, patch.spectral, patch.shape)) / 2
            emit(f"{name}, averaged with unmixing between neighbours", score(y[test], names[mixed[test].argmax(1)]))
    if only & {"ridges", "stack"}:
        with_ridges = np.hstack([patch.x, ridge_features(patch.table, patch.shape)])
    if "ridges" in only:
        p = weighted_lgbm(with_ridges[train], y[train], np.ones(len(train)), with_ridges[test], classes)
        emit("LightGBM + ridge features of B04/B08/B11", score(y[test], names[p.argmax(1)]))
    if "fractions" in only:
        share = class_fractions(data, patch.shape, classes)[train]
        k_rows, k_cls = np.nonzero(share > 0)
        p = weighted_lgbm(patch.x[train[k_rows]], names[k_cls], share[k_rows, k_cls], patch.x[test], classes)
        emit("LightGBM on the polygons' class fractions", score(y[test], names[p.argmax(1)]))
    if "selftrain" in only:
        p = self_trained(patch.x, y, train, split != 1, everywhere, classes)
        emit(
            "LightGBM self-trained (own predictions > 0.9 outside the training blocks)",
            score(y[test], names[p[test].argmax(1)]),
        )
    if "stack" in only:
        assert fcn is not None
        first = weighted_lgbm(with_ridges[train], y[train], np.ones(len(train)), with_ridges, classes)
        p = (self_trained(with_ridges, y, train, split != 1, first, classes) + fcn) / 2
        p = (p + unmixed(p, patch.spectral, patch.shape)) / 2
        emit("ridge features + self-training + network + unmixing", score(y[test], names[p[test].argmax(1)]))
    if "ceiling" in only:
        rng = np.random.default_rng(seed)
        half = rng.random(len(test)) < 0.5
        scored = test[~half]
        emit("LightGBM, scored on half of the held-out pixels", score(y[scored], names[lgbm[~half].argmax(1)]))
        emit(
            "LightGBM with the other half of the held-out pixels among its training pixels (upper bound)",
            score(y[scored], patch.predict(y, np.concatenate([train, test[half]]), scored)),
        )
        blocks = np.unique(patch.block[train])
        for n in (5, 9, 13):
            draws = [
                score(
                    y[test],
                    patch.predict(y, train[np.isin(patch.block[train], rng.choice(blocks, n, replace=False))], test),
                )
                for _ in range(3)
            ]
            emit(f"LightGBM trained on {n} of the training blocks (3 draws)", tuple(np.mean(draws, 0)))
        emit(f"LightGBM trained on all {len(blocks)} training blocks", score(y[test], names[lgbm.argmax(1)]))
        mapped = sorted({int(c) for c in y[y > 0]})
        share = class_fractions(data, patch.shape, mapped)
        emit(
            "the reference polygons' largest class in each pixel's 10 m footprint",
            score(y[test], np.asarray(mapped)[share[test].argmax(1)]),
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "eolearn-slovenia")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--only", default="shift,priors,ensemble,unmix,ridges,fractions,selftrain,stack,ceiling")
    args = ap.parse_args()
    labels = np.load(args.data / "LULC.npy")[..., 0].astype(int)
    acc.patch_lonlat(args.data, labels.shape)  # points the test helpers at --data
    patch = Patch(preset_table(args.data), labels.shape)
    only = set(args.only.split(","))
    rows: dict[str, list[dict]] = defaultdict(list)
    for seed in (int(v) for v in args.seeds.split(",")):
        for row in run_seed(patch, labels, seed, only, args.data):
            rows[row["experiment"]].append(row)
    for experiment, found in rows.items():
        print(
            json.dumps(
                {
                    "experiment": experiment,
                    "mean_kappa": round(float(np.mean([r["kappa"] for r in found])), 4),
                    "mean_macro_f1": round(float(np.mean([r["macro_f1"] for r in found])), 4),
                    "kappa_per_seed": [r["kappa"] for r in found],
                }
            )
        )


if __name__ == "__main__":
    main()
