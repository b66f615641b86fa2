"""Hierarchical models on real labels: eolearn-slovenia's official land-use map (LULC_ID as
category, RABA_ID as subcategory) with features from its real Sentinel-2 scenes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from landcoverpy.inputs import NOT_CLASSIFIED_VALUE, LabelSet
from landcoverpy.models.hierarchical import ModelParams, predict_hierarchy, train_hierarchy
from landcoverpy.models.metrics import classification_metrics
from landcoverpy.models.spatial import spatial_blocks, spatial_splits
from landcoverpy.raster.indices import INDICES, compute_index
from tests.realdata import S2_BANDS_13, slovenia_lulc, slovenia_raba, slovenia_scenes, slovenia_transform

LULC_NAMES = {1: "cultivated", 2: "forest", 3: "grassland", 4: "shrubland", 8: "artificial"}
RABA_NAMES = {
    1100: "arable",
    1300: "permanent_grassland",
    1410: "overgrown_agricultural",
    1500: "trees_and_shrubs",
    2000: "forest_raba",
    3000: "built_up",
}


def slovenia_table(n_points: int = 900, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    scenes = slovenia_scenes()
    lulc, raba = slovenia_lulc(), slovenia_raba()
    layers: dict[str, np.ndarray] = {}
    for s in range(scenes.shape[0]):
        bands = {b: scenes[s, :, :, i] for i, b in enumerate(S2_BANDS_13)}
        for b in ("B02", "B03", "B04", "B05", "B08", "B8A", "B11", "B12"):
            layers[f"t{s}_{b}"] = bands[b]
        for name in INDICES:
            layers[f"t{s}_{name}"] = compute_index(name, bands)
    features = list(layers)
    ok = np.isin(lulc, list(LULC_NAMES)) & np.isin(raba, list(RABA_NAMES))
    rows, cols = np.nonzero(ok)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), size=min(n_points, len(rows)), replace=False)
    rows, cols = rows[pick], cols[pick]
    transform, crs = slovenia_transform()
    xs, ys = transform @ (cols + 0.5, rows + 0.5)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    table = pd.DataFrame({f: layers[f][rows, cols] for f in features})
    table["latitude"], table["longitude"] = lat, lon
    table["category"] = [LULC_NAMES[v] for v in lulc[rows, cols]]
    table["subcategory"] = [RABA_NAMES[v] for v in raba[rows, cols]]
    return table.dropna().reset_index(drop=True), features


def label_sets(table: pd.DataFrame) -> tuple[LabelSet, LabelSet]:
    lc = LabelSet("lc", {n: i + 1 for i, n in enumerate(sorted(set(LULC_NAMES.values())))}, 1)
    sl = LabelSet("sl", {n: i + 2 for i, n in enumerate(sorted(set(RABA_NAMES.values())))}, 2)
    return lc, sl


PARAMS = ModelParams(n_estimators=60, block_km=0.2, folds=5, seed=7)


@pytest.fixture(scope="module")
def trained() -> tuple:
    table, features = slovenia_table()
    lc, sl = label_sets(table)
    return table, features, lc, sl, train_hierarchy(table, features, lc, sl, PARAMS)


def test_spatial_blocks_keep_train_and_test_apart() -> None:
    table, _ = slovenia_table(400)
    groups = spatial_blocks(table["latitude"].to_numpy(), table["longitude"].to_numpy(), 0.2)
    assert 15 <= len(np.unique(groups)) <= 40  # a 1 km square cut in 200 m blocks
    for train_idx, test_idx in spatial_splits(table["category"].to_numpy(), groups, 5, 0):
        assert not set(groups[train_idx]) & set(groups[test_idx])


def test_category_model_reports_metrics_and_beats_majority(trained: tuple) -> None:
    table, features, lc, sl, h = trained
    m = h.category_model.metrics
    assert m["validation"]["scheme"] == "spatial blocks" and m["validation"]["splits"] == 5
    for key in ("overall_accuracy", "kappa", "macro_f1", "per_class", "confusion_matrix"):
        assert key in m
    cm = np.asarray(m["confusion_matrix"])
    # rows are true classes: row sums equal the per-class support
    assert [int(x) for x in cm.sum(axis=1)] == [m["per_class"][c]["support"] for c in m["labels"]]
    assert m["macro_f1"] > h.category_model.baseline["macro_f1"] + 0.1
    assert m["overall_accuracy"] > 0.7
    assert abs(sum(h.category_model.importances.values()) - 1) < 1e-6


def test_subcategory_models_and_direct_mappings(trained: tuple) -> None:
    table, features, lc, sl, h = trained
    subs_per_cat = table.groupby("category")["subcategory"].nunique()
    for cat, n in subs_per_cat.items():
        if n >= 2:
            assert cat in h.subcategory_models
            assert h.subcategory_models[cat].metrics["macro_f1"] > 0
        else:
            assert h.direct[cat] == sl.value(table[table["category"] == cat]["subcategory"].iloc[0])


def test_subcategory_predictions_lie_inside_their_category(trained: tuple) -> None:
    table, features, lc, sl, h = trained
    rng = np.random.default_rng(1)
    X = table[features].to_numpy("float32")
    X = np.vstack([X, X[rng.integers(0, len(X), 500)] * rng.uniform(0.8, 1.2, size=(500, X.shape[1]))]).astype(
        "float32"
    )
    sub_models = {lc.value(c): (m.estimator, m.label_values) for c, m in h.subcategory_models.items()}
    direct = {lc.value(c): v for c, v in h.direct.items()}
    cat, sub, conf = predict_hierarchy(h.category_model.estimator, h.category_model.label_values, sub_models, direct, X)
    allowed: dict[int, set[int]] = {}
    for c, group in table.groupby("category"):
        allowed[lc.value(c)] = {sl.value(s) for s in group["subcategory"]} | {NOT_CLASSIFIED_VALUE}
    for c, s in zip(cat.tolist(), sub.tolist()):
        assert s in allowed[c], (c, s)
    assert conf.min() >= 0 and conf.max() <= 100 and (conf > 0).all()


def test_metrics_known_answer() -> None:
    y_true = np.array(["a", "a", "b", "b", "b", "c"])
    y_pred = np.array(["a", "b", "b", "b", "c", "c"])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["overall_accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["recall"] == pytest.approx(2 / 3)
    # kappa: po = 4/6, pe = (2*1 + 3*3 + 1*2)/36 = 13/36
    assert m["kappa"] == pytest.approx((4 / 6 - 13 / 36) / (1 - 13 / 36))


def test_lightgbm_is_selectable() -> None:
    table, features = slovenia_table(600, seed=3)
    lc, sl = label_sets(table)
    params = ModelParams(model_type="lightgbm", n_estimators=60, block_km=0.2, folds=4, seed=1)
    h = train_hierarchy(table, features, lc, sl, params, subcategories=False)
    assert type(h.category_model.estimator).__name__ == "LGBMClassifier"
    assert h.category_model.metrics["macro_f1"] > h.category_model.baseline["macro_f1"]
    assert h.subcategory_models == {}


def test_hierarchy_layers_scores() -> None:
    """Confidence, uncertainty (1 - margin of the two most probable categories), subcategory
    confidence and per-category probabilities follow from the models' probabilities."""
    from sklearn.ensemble import RandomForestClassifier

    from landcoverpy.models.hierarchical import predict_layers

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)).astype("float32")
    y = np.where(X[:, 0] > 0.5, "a", np.where(X[:, 1] > 0, "b", "c"))
    cat_model = RandomForestClassifier(30, random_state=0).fit(X, y)
    values = [{"a": 2, "b": 3, "c": 4}[c] for c in cat_model.classes_]
    y_sub = np.where(X[:, 2] > 0, "s1", "s2")
    sub_model = RandomForestClassifier(20, random_state=0).fit(X[y == "a"], y_sub[y == "a"])
    out = predict_layers(
        cat_model, values, {2: (sub_model, [5, 6])}, {3: 7, 4: NOT_CLASSIFIED_VALUE}, X, probabilities=True
    )
    proba = cat_model.predict_proba(X)
    top2 = np.sort(proba, axis=1)[:, -2:]
    np.testing.assert_array_equal(out["confidence"], np.rint(top2[:, 1] * 100))
    np.testing.assert_array_equal(out["uncertainty"], np.rint((1 - (top2[:, 1] - top2[:, 0])) * 100))
    np.testing.assert_array_equal(out["probabilities"], np.rint(proba * 100))
    assert (np.abs(out["probabilities"].astype(int).sum(axis=1) - 100) <= len(values)).all()
    cat = out["classification"]
    sub_p = sub_model.predict_proba(X[cat == 2]).max(axis=1)
    np.testing.assert_array_equal(out["sl_confidence"][cat == 2], np.rint(sub_p * 100))
    assert (out["sl_confidence"][cat == 3] == 100).all() and (out["sl_confidence"][cat == 4] == 0).all()
    assert set(np.unique(out["sl_classification"][cat == 2])) <= {5, 6}


def test_classes_too_small_are_left_out_and_named(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(1)
    n = 300
    table = pd.DataFrame(
        {
            "f1": rng.normal(size=n),
            "f2": rng.normal(size=n),
            "latitude": 37 + rng.uniform(0, 0.2, n),
            "longitude": -5 + rng.uniform(0, 0.2, n),
        }
    )
    table["category"] = np.where(table["f1"] > 0, "forest", "water")
    table.loc[:2, "category"] = "lava"  # three points only
    table["subcategory"] = ""
    table["point_id"] = np.arange(n)
    lc = LabelSet("lc", {"water": 1, "forest": 2, "lava": 3}, 1)
    sl = LabelSet("sl", {"x": 2}, 2)
    with caplog.at_level("WARNING"):
        h = train_hierarchy(table, ["f1", "f2"], lc, sl, ModelParams(n_estimators=10, block_km=5, folds=3))
    assert h.category_model.left_out == {"lava": 3}
    assert "lava" not in h.category_model.classes and "'lava' (3)" in caplog.text and "MIN_CLASS_POINTS" in caplog.text
    kept = train_hierarchy(
        table, ["f1", "f2"], lc, sl, ModelParams(n_estimators=10, block_km=5, folds=3, min_class_points=3)
    )
    assert "lava" in kept.category_model.classes and not kept.category_model.left_out


def test_class_weighting_schemes() -> None:
    from landcoverpy.models.hierarchical import class_weights

    y = np.array(["a"] * 90 + ["b"] * 10)
    assert class_weights(y, "balanced") == "balanced" and class_weights(y, "none") is None
    w = class_weights(y, "sqrt")
    assert isinstance(w, dict)
    balanced = {"a": 100 / (2 * 90), "b": 100 / (2 * 10)}
    for c in ("a", "b"):
        assert w[c] == pytest.approx(balanced[c] ** 0.5)
    assert 1 < w["b"] / w["a"] < balanced["b"] / balanced["a"]  # milder than balanced


def test_tuning_keeps_the_best_of_its_trials() -> None:
    from landcoverpy.models.tuning import SPACES, candidates, tune

    table, features = slovenia_table(n_points=400, seed=3)
    lc, _ = label_sets(table)
    base = ModelParams(n_estimators=20, block_km=0.2, folds=3, seed=7, min_class_points=3)
    cands = candidates(base, 4, seed=1)
    assert cands[0] == base and len(set(cands)) == 4
    assert all(c.n_estimators in SPACES["random_forest"]["n_estimators"] for c in cands[1:])
    best, trials = tune(table, features, lc, base, trials=4, seed=1)
    assert len(trials) == 4 and trials[0].params == base.identity()
    top = max(trials, key=lambda t: (t.macro_f1, t.kappa))
    assert best.identity() == top.params
    assert all(0 <= t.macro_f1 <= 1 and t.seconds > 0 for t in trials)
