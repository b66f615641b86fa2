"""Hierarchical LULC models: one category model over all samples, then one subcategory model per
category that has two or more subcategories. Pure computation on tables and arrays; storing and
loading live in :mod:`landcoverpy.pipeline.training`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier

from landcoverpy.assets.params import ModelParams
from landcoverpy.errors import ModelError
from landcoverpy.inputs import NOT_CLASSIFIED_VALUE, LabelSet
from landcoverpy.models.forest_infer import forest_proba
from landcoverpy.models.forest_size import choose_size, prefix_predictions, score_sizes, tree_counts
from landcoverpy.models.metrics import ClassificationScores, classification_metrics
from landcoverpy.models.spatial import spatial_blocks, spatial_splits

log = logging.getLogger(__name__)

__all__ = [
    "Hierarchy",
    "ModelParams",
    "TrainedModel",
    "make_estimator",
    "predict_hierarchy",
    "predict_layers",
    "train_hierarchy",
]


def make_estimator(params: ModelParams, n_jobs: int = -1) -> Any:
    if params.model_type == "random_forest":
        return RandomForestClassifier(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            random_state=params.seed,
            min_samples_leaf=params.min_samples_leaf,
            n_jobs=n_jobs,
            class_weight=None,
        )
    if params.model_type == "lightgbm":
        return LGBMClassifier(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth or -1,
            random_state=params.seed,
            num_leaves=params.num_leaves,
            learning_rate=params.learning_rate,
            n_jobs=n_jobs,
            class_weight=None,
            verbose=-1,
        )
    raise ModelError(f"unknown MODEL_TYPE {params.model_type!r}: use random_forest or lightgbm")


@dataclass
class TrainedModel:
    level: str  # "category" or "subcategory"
    category: str | None  # for subcategory models: the parent category
    estimator: Any
    features: list[str]
    classes: list[str]  # names in estimator.classes_ order
    label_values: list[int]  # map values in the same order
    metrics: dict[str, Any]
    baseline: dict[str, Any]
    importances: dict[str, float]
    params: dict[str, Any]
    left_out: dict[str, int] = field(default_factory=dict)  # classes too small to learn -> their points

    @property
    def scores(self) -> ClassificationScores:
        """The spatial cross-validation's scores."""
        return ClassificationScores.of(self.metrics)

    @property
    def baseline_scores(self) -> ClassificationScores:
        """The majority-class baseline's scores on the same folds."""
        return ClassificationScores.of(self.baseline)

    def predict_values(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map values and the probability of the chosen class for each row of ``X``."""
        proba = forest_proba(self.estimator, X)
        idx = np.argmax(proba, axis=1)
        values = np.asarray(self.label_values, dtype="uint8")[idx]
        return values, proba[np.arange(len(idx)), idx]


def sample_blocks(table: pd.DataFrame, block_km: float) -> np.ndarray:
    """Each sample's spatial block: its own position, or its polygon's centroid for the pixels of
    labelled polygons (a polygon never straddles two blocks)."""
    if "block_latitude" in table:
        return spatial_blocks(table["block_latitude"].to_numpy(), table["block_longitude"].to_numpy(), block_km)
    return spatial_blocks(table["latitude"].to_numpy(), table["longitude"].to_numpy(), block_km)


def per_polygon(y: np.ndarray, pred: np.ndarray, polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each polygon's label and the class predicted for most of its pixels (ties: the first in
    sorted order): what a person checking parcels sees."""
    frame = pd.DataFrame({"polygon": polygons, "y": y, "pred": pred})
    votes = frame.groupby(["polygon", "pred"]).size().reset_index(name="n")
    votes = votes.sort_values(["polygon", "n", "pred"], ascending=[True, False, True]).drop_duplicates("polygon")
    truth = frame.drop_duplicates("polygon").set_index("polygon")["y"]
    return truth.loc[votes["polygon"]].to_numpy(), votes["pred"].to_numpy()


def _cross_validate(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    params: ModelParams,
    labels: list[str],
    polygons: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Out-of-fold predictions over spatial blocks, for the model and a majority-class baseline.

    A random forest is also scored at every smaller size (its first k trees, see
    :mod:`landcoverpy.models.forest_size`); the returned metrics are those of the size kept
    (the fewest trees within ``params.tree_tolerance`` of the whole forest), returned third."""
    splits = spatial_splits(y, groups, params.folds, params.seed)
    sized = params.model_type == "random_forest" and params.tree_tolerance > 0
    counts = tree_counts(params.n_estimators) if sized else [params.n_estimators]
    tested = np.zeros(len(y), dtype=bool)
    pred = {k: np.empty(len(y), dtype=object) for k in counts}
    base = np.empty(len(y), dtype=object)
    for train_idx, test_idx in splits:
        if len(np.unique(y[train_idx])) < 2:
            majority = DummyClassifier(strategy="most_frequent").fit(X[train_idx], y[train_idx]).predict(X[test_idx])
            for k in counts:
                pred[k][test_idx] = majority
        else:
            model = clone(estimator).fit(X[train_idx], y[train_idx])
            if sized:
                for k, p in prefix_predictions(model, X[test_idx], counts).items():
                    pred[k][test_idx] = p
            else:
                pred[counts[0]][test_idx] = model.predict(X[test_idx])
        base[test_idx] = DummyClassifier(strategy="most_frequent").fit(X[train_idx], y[train_idx]).predict(X[test_idx])
        tested[test_idx] = True
    kept = counts[-1]
    sizes: list[dict[str, Any]] = []
    if sized:
        scores = score_sizes(y[tested], {k: p[tested] for k, p in pred.items()}, labels)
        kept = choose_size(scores, params.tree_tolerance)
        sizes = [s.to_dict() for s in scores]
    metrics = classification_metrics(y[tested], pred[kept][tested].astype(str), labels)
    baseline = classification_metrics(y[tested], base[tested].astype(str), labels)
    if polygons is not None:  # labelled polygons: also scored per polygon (majority of its pixels)
        truth, voted = per_polygon(y[tested], pred[kept][tested].astype(str), polygons[tested])
        metrics["per_polygon"] = classification_metrics(truth, voted, labels)
        metrics["per_polygon"]["polygons"] = len(truth)
    metrics["validation"] = {
        "scheme": "spatial blocks",
        "block_km": params.block_km,
        "splits": len(splits),
        "blocks": int(len(np.unique(groups))),
    }
    if sized:
        metrics["forest_size"] = {
            "trees": kept,
            "of": params.n_estimators,
            "tolerance": params.tree_tolerance,
            "scores": sizes,
        }
    return metrics, baseline, kept


def class_weights(y: np.ndarray, scheme: str) -> dict[str, float] | str | None:
    """Per-class weights for fitting: ``balanced`` n / (k n_c) (every class weighs the same in
    total), ``sqrt`` its square root (rare classes count more, without letting a handful of
    samples dominate), ``none``."""
    if scheme == "none":
        return None
    if scheme == "balanced":
        return "balanced"  # the estimators' own: recomputed on each fold
    names, counts = np.unique(y, return_counts=True)
    w = len(y) / (len(names) * counts.astype(float))
    if scheme != "sqrt":
        raise ModelError(f"unknown CLASS_WEIGHTING {scheme!r}: use balanced, sqrt or none")
    w = np.sqrt(w)
    return {str(n): float(v) for n, v in zip(names, w)}


def too_small(table: pd.DataFrame, target: str, minimum: int) -> dict[str, int]:
    """Classes labelled at fewer than ``minimum`` points (not pixels: a point gives a 3x3 window
    of nearly identical samples), with their point counts."""
    unit = "polygon_id" if "polygon_id" in table else "point_id"  # a polygon counts once, like a point
    points = table.drop_duplicates(unit) if unit in table else table
    counts = points[target].astype(str).value_counts()
    return {str(c): int(n) for c, n in counts.items() if n < minimum}


def train_level(
    table: pd.DataFrame,
    features: list[str],
    target: str,
    labels: LabelSet,
    params: ModelParams,
    level: str,
    category: str | None = None,
) -> TrainedModel:
    what = f"{level}" + (f" [{category}]" if category else "")
    small = too_small(table, target, params.min_class_points)
    if small:
        log.warning(
            "%s model: class(es) %s labelled at fewer than %d points (MIN_CLASS_POINTS) are left out; "
            "label more points of them to map them",
            what,
            ", ".join(f"{c!r} ({n})" for c, n in sorted(small.items())),
            params.min_class_points,
        )
        table = table[~table[target].astype(str).isin(small)]
        if table[target].nunique() < 2:
            raise ModelError(
                f"{what} model: fewer than two classes have {params.min_class_points} labelled points "
                f"or more (MIN_CLASS_POINTS); too small: {', '.join(sorted(small))}"
            )
    y = table[target].astype(str).to_numpy()
    X = table[features].to_numpy(dtype="float32")
    groups = sample_blocks(table, params.block_km)
    polygons = table["polygon_id"].to_numpy() if "polygon_id" in table else None
    names = sorted(set(y), key=labels.value)
    estimator = make_estimator(params, params.training_threads())
    estimator.set_params(class_weight=class_weights(y, params.class_weighting))
    metrics, baseline, trees = _cross_validate(estimator, X, y, groups, params, names, polygons)
    if trees != params.n_estimators:
        log.info(
            "%s model: %d of %d trees kept (spatial CV within %.3f of the whole forest; TREE_TOLERANCE)",
            what,
            trees,
            params.n_estimators,
            params.tree_tolerance,
        )
    final = clone(estimator).set_params(n_estimators=trees).fit(X, y)
    classes = [str(c) for c in final.classes_]
    imp = getattr(final, "feature_importances_", np.zeros(len(features)))
    imp = np.asarray(imp, dtype=float)
    imp = imp / imp.sum() if imp.sum() > 0 else imp
    scores = ClassificationScores.of(metrics)
    log.info(
        "%s model: OA %.3f, kappa %.3f, macro F1 %.3f (majority baseline macro F1 %.3f), %d samples",
        what,
        scores.overall_accuracy,
        scores.kappa,
        scores.macro_f1,
        ClassificationScores.of(baseline).macro_f1,
        len(y),
    )
    return TrainedModel(
        level=level,
        category=category,
        estimator=final,
        features=list(features),
        classes=classes,
        label_values=[labels.value(c) for c in classes],
        metrics=metrics,
        baseline=baseline,
        importances={f: float(v) for f, v in zip(features, imp)},
        params=params.to_dict(),
        left_out=small,
    )


@dataclass
class Hierarchy:
    category_model: TrainedModel
    subcategory_models: dict[str, TrainedModel] = field(default_factory=dict)
    # category name -> subcategory value when no model is needed (one subcategory), or
    # NOT_CLASSIFIED_VALUE when the category has no subcategory labels
    direct: dict[str, int] = field(default_factory=dict)


def train_hierarchy(
    table: pd.DataFrame,
    features: list[str],
    lc: LabelSet,
    sl: LabelSet,
    params: ModelParams,
    subcategories: bool = True,
) -> Hierarchy:
    if table["category"].nunique() < 2:
        raise ModelError(f"the training table has a single category ({table['category'].iloc[0]!r}); need 2 or more")
    hierarchy = Hierarchy(category_model=train_level(table, features, "category", lc, params, "category"))
    if not subcategories:
        return hierarchy
    for cat in sorted(table["category"].unique(), key=lc.value):
        sub = table[(table["category"] == cat) & (table["subcategory"].astype(str) != "")]
        names = sorted(sub["subcategory"].unique())
        if len(names) == 0:
            hierarchy.direct[cat] = NOT_CLASSIFIED_VALUE
        elif len(names) == 1:
            hierarchy.direct[cat] = sl.value(names[0])
        else:
            try:
                hierarchy.subcategory_models[cat] = train_level(
                    sub, features, "subcategory", sl, params, "subcategory", category=cat
                )
            except ValueError as exc:
                log.warning("subcategory model for %s not trained (%s); its pixels stay not classified", cat, exc)
                hierarchy.direct[cat] = NOT_CLASSIFIED_VALUE
    return hierarchy


def predict_hierarchy(
    category_model: Any,
    category_values: list[int],
    subcategory_models: dict[int, tuple[Any, list[int]]],
    direct: dict[int, int],
    X: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Category value, subcategory value and confidence (0-100, probability of the chosen
    category) for each row of ``X``. Subcategory models only see the pixels of their category,
    so a subcategory always lies inside its predicted category."""
    layers = predict_layers(category_model, category_values, subcategory_models, direct, X)
    return layers["classification"], layers["sl_classification"], layers["confidence"]


def predict_layers(
    category_model: Any,
    category_values: list[int],
    subcategory_models: dict[int, tuple[Any, list[int]]],
    direct: dict[int, int],
    X: np.ndarray,
    probabilities: bool = False,
) -> dict[str, np.ndarray]:
    """Every per-pixel output of the hierarchy for the rows of ``X`` (uint8):

    - ``classification`` / ``sl_classification``: category and subcategory values;
    - ``confidence``: probability of the chosen category, 0-100;
    - ``sl_confidence``: probability of the chosen subcategory, 0-100 (100 when the category has
      a single subcategory, 0 when it has none: not classified);
    - ``uncertainty``: 100 x (1 - margin between the two most probable categories), 0 = the
      model has no doubt, 100 = a tie;
    - ``probabilities`` (with ``probabilities``): (rows, categories) probability of each
      category in ``category_values`` order, 0-100.
    """
    n = X.shape[0]
    k = len(category_values)
    out = {
        name: np.zeros(n, dtype="uint8")
        for name in ("classification", "sl_classification", "confidence", "sl_confidence", "uncertainty")
    }
    if probabilities:
        out["probabilities"] = np.zeros((n, k), dtype="uint8")
    if n == 0:
        return out
    proba = forest_proba(category_model, X)
    idx = np.argmax(proba, axis=1)
    top = proba[np.arange(n), idx]
    second = np.sort(proba, axis=1)[:, -2] if proba.shape[1] > 1 else np.zeros(n)
    cat = np.asarray(category_values, dtype="uint8")[idx]
    out["classification"][:] = cat
    out["confidence"][:] = _percent(top)
    out["uncertainty"][:] = _percent(1.0 - (top - second))
    if probabilities:
        out["probabilities"][:] = _percent(proba)
    out["sl_classification"][:] = NOT_CLASSIFIED_VALUE
    for value in np.unique(cat):
        rows = cat == value
        if int(value) in subcategory_models:
            model, values = subcategory_models[int(value)]
            sub_proba = forest_proba(model, X[rows])
            sub_idx = np.argmax(sub_proba, axis=1)
            out["sl_classification"][rows] = np.asarray(values, dtype="uint8")[sub_idx]
            out["sl_confidence"][rows] = _percent(sub_proba[np.arange(len(sub_idx)), sub_idx])
        else:
            out["sl_classification"][rows] = direct.get(int(value), NOT_CLASSIFIED_VALUE)
            out["sl_confidence"][rows] = (
                0 if direct.get(int(value), NOT_CLASSIFIED_VALUE) == NOT_CLASSIFIED_VALUE else 100
            )
    return out


def _percent(p: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.rint(np.asarray(p) * 100), 0, 100), dtype="uint8")
