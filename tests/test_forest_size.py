"""Random forests sized by the spatial cross-validation (models/forest_size.py), on the real
Slovenian land-use labels and features of tests/test_training.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from landcoverpy.models.forest_size import (
    MIN_TREES,
    SizeScore,
    choose_size,
    prefix_predictions,
    score_sizes,
    tree_counts,
)
from landcoverpy.models.hierarchical import ModelParams, train_level
from tests.test_training import label_sets, slovenia_table


@pytest.fixture(scope="module")
def table() -> tuple:
    return slovenia_table(n_points=700, seed=3)


def test_tree_counts() -> None:
    assert tree_counts(100) == [30, 40, 50, 60, 70, 80, 90, 100]
    assert tree_counts(45) == [30, 40, 45]
    assert tree_counts(MIN_TREES) == [MIN_TREES]
    assert tree_counts(7) == [7]


def test_prefix_predictions_are_the_smaller_forests(table: tuple) -> None:
    frame, features = table
    X = frame[features].to_numpy("float32")
    y = frame["category"].to_numpy()
    train, test = slice(0, 500), slice(500, None)
    full = RandomForestClassifier(n_estimators=50, random_state=5, class_weight="balanced").fit(X[train], y[train])
    preds = prefix_predictions(full, X[test], [20, 30, 50])
    assert sorted(preds) == [20, 30, 50]  # any sizes, not only tree_counts()
    np.testing.assert_array_equal(preds[50], full.predict(X[test]))
    for k in (20, 30):
        small = RandomForestClassifier(n_estimators=k, random_state=5, class_weight="balanced").fit(X[train], y[train])
        np.testing.assert_array_equal(preds[k], small.predict(X[test]))


def test_choose_size_takes_the_fewest_trees_within_tolerance() -> None:
    scores = [
        SizeScore(20, 0.80, 0.60, 0.50),
        SizeScore(30, 0.85, 0.66, 0.55),
        SizeScore(40, 0.86, 0.69, 0.52),
        SizeScore(100, 0.86, 0.70, 0.56),
    ]
    assert choose_size(scores, 0.01) == 100  # 40 trees lose 0.04 of macro F1
    assert choose_size(scores, 0.02) == 100
    assert choose_size(scores, 0.05) == 30
    assert choose_size(scores, 0.2) == 20
    assert choose_size(scores, 0.0) == 100
    assert choose_size([SizeScore(20, 0.9, 0.8, 0.7), SizeScore(50, 0.9, 0.8, 0.7)], 0.0) == 20  # as good: smaller


def test_score_sizes_are_out_of_fold_metrics() -> None:
    y = np.array(["a", "a", "b", "b"])
    scores = score_sizes(y, {30: np.array(["a", "b", "b", "b"]), 20: y.copy()}, ["a", "b"])
    assert [s.trees for s in scores] == [20, 30]
    assert scores[0].overall_accuracy == 1.0 and scores[1].overall_accuracy == 0.75


def test_trained_forest_keeps_the_size_its_cross_validation_chose(table: tuple) -> None:
    frame, features = table
    lc, _ = label_sets(frame)
    params = ModelParams(n_estimators=70, block_km=0.2, folds=4, seed=7, tree_tolerance=0.02)
    model = train_level(frame, features, "category", lc, params, "category")
    sizing = model.metrics["forest_size"]
    kept = sizing["trees"]
    assert sizing["of"] == 70 and [s["trees"] for s in sizing["scores"]] == tree_counts(70)
    assert len(model.estimator.estimators_) == kept == model.estimator.n_estimators
    row = next(s for s in sizing["scores"] if s["trees"] == kept)
    assert row["kappa"] == round(model.metrics["kappa"], 4)  # the metrics reported are the kept forest's
    full = sizing["scores"][-1]
    for key in ("overall_accuracy", "kappa", "macro_f1"):
        assert row[key] >= full[key] - 0.02 - 1e-9
    smaller = [s for s in sizing["scores"] if s["trees"] < kept]
    assert all(any(s[k] < full[k] - 0.02 for k in ("overall_accuracy", "kappa", "macro_f1")) for s in smaller)
    # the kept forest is the first `kept` trees of the whole one: same decisions
    X = frame[features].to_numpy("float32")
    whole = train_level(frame, features, "category", lc, replace(params, tree_tolerance=0.0), "category")
    assert "forest_size" not in whole.metrics and len(whole.estimator.estimators_) == 70
    np.testing.assert_array_equal(model.estimator.predict(X), prefix_predictions(whole.estimator, X, [kept])[kept])


def test_lightgbm_is_not_sized(table: tuple) -> None:
    frame, features = table
    lc, _ = label_sets(frame)
    params = ModelParams(model_type="lightgbm", n_estimators=30, block_km=0.2, folds=3, seed=1)
    model = train_level(frame, features, "category", lc, params, "category")
    assert "forest_size" not in model.metrics and model.estimator.n_estimators == 30
