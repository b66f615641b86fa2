"""The abundance forest is cut to the trees its validation blocks need (models/abundance.py
size_forest): the prefix predictions it scores are scikit-learn's own, the size kept is the
fewest within the tolerance, the saved forest has exactly those trees, and the test error of the
cut forest stays with the whole forest's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

from landcoverpy.errors import InputValidationError
from landcoverpy.models.abundance import TrainParams, train_abundance
from landcoverpy.models.forest_infer import prefix_regression
from landcoverpy.models.forest_size import fewest_trees_within, tree_counts
from tests.abundance_data import generated_mixtures


@pytest.mark.parametrize(
    "make, outputs",
    [
        (
            lambda n: RandomForestRegressor(
                n_estimators=n, min_samples_leaf=3, max_features=0.3, random_state=4, n_jobs=1
            ),
            3,
        ),
        (lambda n: RandomForestRegressor(n_estimators=n, random_state=1, n_jobs=1), 1),
        (lambda n: ExtraTreesRegressor(n_estimators=n, random_state=2, n_jobs=1), 3),
    ],
)
def test_prefix_regression_is_sklearns(make, outputs: int) -> None:  # noqa: ANN001
    data, _ = generated_mixtures(rows=20, cols=30)
    X = np.nan_to_num(data.series.reshape(len(data), -1))
    y = data.fractions[:, :outputs] if outputs > 1 else data.fractions[:, 0]
    forest = make(40).fit(X[:400], y[:400])
    rest = X[400:]
    got = prefix_regression(forest, rest, [10, 25, 40])
    full = forest.predict(rest).reshape(len(rest), -1)
    np.testing.assert_array_equal(got[40], full)  # the same additions in the same order: the same bits
    for k in (10, 25):  # the first k trees are the k-tree forest of the same seed
        np.testing.assert_allclose(
            got[k], make(k).fit(X[:400], y[:400]).predict(rest).reshape(len(rest), -1), rtol=1e-12, atol=1e-12
        )
    assert not np.array_equal(got[10], got[40])
    assert prefix_regression(forest, rest[:0], [40])[40].shape == (0, outputs)


def test_fewest_trees_within_tolerance() -> None:
    errors = {30: 0.120, 40: 0.1015, 50: 0.1008, 60: 0.1001, 70: 0.1000}
    assert fewest_trees_within(errors, 0.01) == 50  # 0.1008 <= 0.101, 0.1015 is not
    assert fewest_trees_within(errors, 0.02) == 40
    assert fewest_trees_within(errors, 0.0) == 70
    assert fewest_trees_within({30: 0.09, 40: 0.1}, 0.0) == 30  # a smaller forest that is better outright
    with pytest.raises(ValueError):
        fewest_trees_within({}, 0.01)


@pytest.fixture(scope="module")
def mixtures() -> tuple:
    data, _ = generated_mixtures(rows=40, cols=60, seed=3)
    return data


def test_forest_cut_to_the_trees_validation_needs(mixtures) -> None:  # noqa: ANN001
    params = TrainParams(model_type="forest", trees=150, threads=2, seed=0)
    model, metrics = train_abundance(mixtures, params)
    size = metrics["forest_size"]
    assert size["of"] == 150 and size["tolerance"] == 0.01
    assert sorted(int(k) for k in size["validation_rmse"]) == tree_counts(150)
    kept = size["trees"]
    assert kept in tree_counts(150)
    assert len(model.forest.estimators_) == kept == model.params["forest_trees"]
    rmse = {int(k): v for k, v in size["validation_rmse"].items()}
    assert rmse[kept] <= rmse[150] * 1.01 + 1e-5
    assert all(rmse[k] > rmse[150] * 1.01 for k in rmse if k < kept)

    full, full_metrics = train_abundance(
        mixtures, TrainParams(model_type="forest", trees=150, threads=2, seed=0, tree_tolerance=0.0)
    )
    assert full_metrics["forest_size"]["trees"] == len(full.forest.estimators_)
    assert full_metrics["forest_size"]["validation_rmse"] == {}
    # the same split: the cut forest's test error stays with the whole forest's
    assert metrics["split"] == full_metrics["split"]
    print(f"trees kept {kept} of 150: test RMSE {metrics['model']['rmse']:.4f} vs {full_metrics['model']['rmse']:.4f}")
    assert metrics["model"]["rmse"] <= full_metrics["model"]["rmse"] * 1.03
    pred = model.predict(mixtures.series[:100], mixtures.ancillary[:100])
    np.testing.assert_allclose(pred.sum(axis=1), 1.0, atol=1e-5)


def test_tree_tolerance_is_checked() -> None:
    with pytest.raises(InputValidationError, match="tree_tolerance"):
        TrainParams(tree_tolerance=-0.1).validate()
    with pytest.raises(InputValidationError, match="tree_tolerance"):
        TrainParams.from_mapping({"tree_tolerance": 1.5}, "train.yaml")


def test_ensemble_sizes_its_own_forest(mixtures) -> None:  # noqa: ANN001
    """``auto`` sizes the forest twice on the same validation blocks: alone, and as the ensemble
    uses it (averaged with BRITS's fractions); each model keeps its own first trees of one refit."""
    params = TrainParams(model_type="auto", trees=150, seed=0, epochs=4, patience=2, batch_size=64)
    model, metrics = train_abundance(mixtures, params)
    alone, ens = metrics["forest_size"], metrics["ensemble_forest_size"]
    assert alone["of"] == ens["of"] == 150
    assert sorted(int(k) for k in ens["validation_rmse"]) == tree_counts(150)
    assert ens["validation_rmse"] != alone["validation_rmse"]  # scored with BRITS's share, not the forest's alone
    rmse = {int(k): v for k, v in ens["validation_rmse"].items()}
    kept = ens["trees"]
    assert rmse[kept] <= rmse[150] * 1.01 + 1e-5
    assert all(rmse[k] > rmse[150] * 1.01 for k in rmse if k < kept)
    # the ensemble's validation RMSE reported for the choice is the one of the size kept
    val_rmse = metrics["candidates"]["ensemble"]["validation_rmse"]
    assert val_rmse == pytest.approx(rmse[kept], abs=1e-5)  # one level: the same mean of squared errors

    # retrain the ensemble alone on the same split: its forest has the ensemble's size, not the forest's
    ensemble, ens_metrics = train_abundance(mixtures, replace(params, model_type="ensemble"))
    assert ens_metrics["ensemble_forest_size"]["trees"] == kept
    assert len(ensemble.forest.estimators_) == kept == ensemble.params["forest_trees"]
    assert ens_metrics["candidates"]["forest"]["validation_rmse"] == metrics["candidates"]["forest"]["validation_rmse"]
    pred = ensemble.predict(mixtures.series[:200], mixtures.ancillary[:200])
    np.testing.assert_allclose(pred.sum(axis=1), 1.0, atol=1e-5)
    # the ensemble is the mean of its members: BRITS and the first `kept` trees of the refit forest
    forest_alone = replace(ensemble, kind="forest", network=None).predict(
        mixtures.series[:200], mixtures.ancillary[:200]
    )
    brits_alone = replace(ensemble, kind="brits", forest=None).predict(mixtures.series[:200], mixtures.ancillary[:200])
    np.testing.assert_allclose(pred, (forest_alone + brits_alone) / 2, atol=1e-6)
