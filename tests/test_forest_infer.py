"""The random-forest probability path (models/forest_infer.py) is scikit-learn's predict_proba
to the bit: on real Slovenian features and labels, with class weights, extra trees, gaps in the
input, single rows and empty input; and the classification call (predict_layers) decides the
same class, subcategory, confidence and uncertainty on every pixel as it did with sklearn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from landcoverpy.models import forest_infer, hierarchical
from landcoverpy.models.forest_infer import forest_proba, supported
from landcoverpy.models.hierarchical import ModelParams, predict_layers, train_hierarchy
from tests.test_training import label_sets, slovenia_table


@pytest.fixture(scope="module")
def table() -> tuple:
    return slovenia_table(n_points=900, seed=5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomForestClassifier(n_estimators=25, random_state=0, n_jobs=1),
        lambda: RandomForestClassifier(n_estimators=12, random_state=1, class_weight="balanced", min_samples_leaf=3),
        lambda: ExtraTreesClassifier(n_estimators=15, random_state=2, n_jobs=1),
    ],
)
@pytest.mark.parametrize("chunk", [None, 7])  # rows per chunk: the default, and many chunks with a partial last one
def test_probabilities_are_sklearns_to_the_bit(
    table: tuple,
    make,
    chunk: int | None,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if chunk is not None:
        monkeypatch.setattr(forest_infer, "ROW_CHUNK", chunk)
    frame, features = table
    X = frame[features].to_numpy("float32")
    y = frame["category"].to_numpy()
    forest = make().fit(X[:600], y[:600])
    assert supported(forest)
    rest = X[600:]
    np.testing.assert_array_equal(forest_proba(forest, rest), forest.predict_proba(rest))
    np.testing.assert_array_equal(forest_proba(forest, rest[:1]), forest.predict_proba(rest[:1]))
    gaps = rest.copy()
    gaps[::7, ::3] = np.nan  # scikit-learn routes missing values; the same traversal routes them here
    np.testing.assert_array_equal(forest_proba(forest, gaps), forest.predict_proba(gaps))
    as_float64 = rest.astype("float64")  # converted to float32 as scikit-learn does
    np.testing.assert_array_equal(forest_proba(forest, as_float64), forest.predict_proba(as_float64))
    assert forest_proba(forest, rest[:0]).shape == (0, len(forest.classes_))


def test_other_estimators_use_their_own_predict_proba(table: tuple) -> None:
    from lightgbm import LGBMClassifier

    frame, features = table
    X = frame[features].to_numpy("float32")
    y = frame["category"].to_numpy()
    booster = LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
    threaded = RandomForestClassifier(n_estimators=5, n_jobs=2, random_state=0).fit(X, y)
    assert not supported(booster) and not supported(threaded)
    np.testing.assert_array_equal(forest_proba(booster, X[:50]), booster.predict_proba(X[:50]))
    np.testing.assert_allclose(forest_proba(threaded, X[:50]), threaded.predict_proba(X[:50]))


def test_classification_layers_unchanged(table: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    frame, features = table
    lc, sl = label_sets(frame)
    h = train_hierarchy(frame, features, lc, sl, ModelParams(n_estimators=40, block_km=0.2, folds=3, seed=3))
    assert h.subcategory_models, "the test needs a subcategory model"
    cat = h.category_model
    cat.estimator.set_params(n_jobs=1)
    subs = {}
    for name, m in h.subcategory_models.items():
        m.estimator.set_params(n_jobs=1)
        subs[lc.value(name)] = (m.estimator, m.label_values)
    direct = {lc.value(c): v for c, v in h.direct.items()}
    X = frame[features].to_numpy("float32")
    ours = predict_layers(cat.estimator, cat.label_values, subs, direct, X, probabilities=True)
    monkeypatch.setattr(hierarchical, "forest_proba", lambda est, x: est.predict_proba(x))
    theirs = predict_layers(cat.estimator, cat.label_values, subs, direct, X, probabilities=True)
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
