"""BRITS abundance estimation on generated mixtures (known answers) and on real data."""

from __future__ import annotations

import numpy as np
import pytest

from landcoverpy.errors import InputValidationError, ModelError
from landcoverpy.models.abundance import (
    TrainParams,
    abundance_metrics,
    clean_fractions,
    deltas,
    linear_interpolation,
    train_abundance,
)
from tests.abundance_data import generated_mixtures, slovenia_cells

PARAMS = TrainParams(hidden=32, ancillary_hidden=16, epochs=60, patience=10, batch_size=128, seed=0, model_type="brits")


@pytest.fixture(scope="module")
def mixture_model() -> tuple:
    data, clean = generated_mixtures()
    model, metrics = train_abundance(data, PARAMS)
    return data, clean, model, metrics


def test_deltas_follow_brits_definition() -> None:
    mask = np.array([[[1], [0], [0], [1], [1]]], dtype="float32")
    assert deltas(mask)[0, :, 0].tolist() == [0, 1, 2, 3, 1]
    assert deltas(mask, np.array([0, 8, 16, 30, 31]))[0, :, 0].tolist() == [0, 8, 16, 30, 1]


def test_mixture_rmse_well_below_mean_abundance_baseline(mixture_model: tuple) -> None:
    _, _, model, metrics = mixture_model
    m, b = metrics["model"], metrics["mean_abundance_baseline"]
    assert metrics["split"]["scheme"] == "spatial blocks" and metrics["split"]["test"] > 200
    assert m["rmse"] < 0.5 * b["rmse"], (m["rmse"], b["rmse"])
    assert m["r2"] > 0.6
    assert set(m["per_class"]) == {"class0", "class1", "class2"}
    for stats in m["per_class"].values():
        assert {"rmse", "mae", "r2"} <= set(stats)
    pred = model.predict(mixture_model[0].series[:50], mixture_model[0].ancillary[:50])
    np.testing.assert_allclose(pred.sum(axis=1), 1.0, atol=1e-5)


def test_imputation_beats_linear_interpolation(mixture_model: tuple) -> None:
    data, clean, model, _ = mixture_model
    rng = np.random.default_rng(5)
    series = data.series.copy()
    observed = np.isfinite(series[:, :, 0])
    interior = observed.copy()
    interior[:, [0, -1]] = False  # hide only interior steps, where interpolation has both sides
    candidates = np.argwhere(interior)
    hide = candidates[rng.choice(len(candidates), size=len(candidates) // 10, replace=False)]
    series[hide[:, 0], hide[:, 1], :] = np.nan
    truth = data.series[hide[:, 0], hide[:, 1], :]
    brits = model.impute(series, data.ancillary)[hide[:, 0], hide[:, 1], :]
    linear = linear_interpolation(series)[hide[:, 0], hide[:, 1], :]
    rmse_brits = float(np.sqrt(np.mean((brits - truth) ** 2)))
    rmse_linear = float(np.sqrt(np.mean((linear - truth) ** 2)))
    print(f"hidden values: BRITS RMSE {rmse_brits:.4f}, linear interpolation RMSE {rmse_linear:.4f}")
    assert rmse_brits < rmse_linear


@pytest.mark.slow  # in `make test`'s second pass, not the default suite's 15-minute budget
def test_finetuning_beats_scratch_with_ten_percent_of_labels() -> None:
    source, _ = generated_mixtures(seed=1)
    target, _ = generated_mixtures(seed=2, shift=0.3)
    base, _ = train_abundance(source, PARAMS)
    rng = np.random.default_rng(0)
    blocks = np.unique(target.blocks)
    few_blocks = rng.choice(blocks, size=max(4, len(blocks) // 10), replace=False)
    few = np.isin(target.blocks, few_blocks)
    small = target.subset(np.nonzero(few)[0])
    rest = target.subset(np.nonzero(~few)[0])
    tuned, _ = train_abundance(small, PARAMS, base=base)
    scratch, _ = train_abundance(small, PARAMS)
    rmse = {
        name: abundance_metrics(rest.fractions, m.predict(rest.series, rest.ancillary), rest.classes)["rmse"]
        for name, m in (("tuned", tuned), ("scratch", scratch))
    }
    print(
        f"target area, {few.mean():.0%} of labels: fine-tuned RMSE {rmse['tuned']:.4f}, scratch {rmse['scratch']:.4f}"
    )
    assert rmse["tuned"] < rmse["scratch"]


def test_finetuning_to_a_new_legend_replaces_the_head(mixture_model: tuple) -> None:
    data, _, model, _ = mixture_model
    merged = data.fractions[:, :2].copy()
    merged[:, 1] += data.fractions[:, 2]
    new = type(data)(data.series, data.ancillary, merged, data.blocks, ["a", "bc"], data.times)
    tuned, _ = train_abundance(new, TrainParams(**{**PARAMS.to_dict(), "epochs": 5}), base=model)
    assert tuned.classes == ["a", "bc"]
    assert tuned.predict(data.series[:3], data.ancillary[:3]).shape == (3, 2)
    assert model.predict(data.series[:3], data.ancillary[:3]).shape == (3, 3)  # the base is untouched


@pytest.mark.slow  # ~40 s; benchmarks/abundance_slovenia.py measures the same data in full
def test_real_slovenia_ndvi_cells_beat_the_baseline() -> None:
    data = slovenia_cells()
    assert data.series.shape[1] == 68 and 0.3 < np.isnan(data.series).mean() < 0.9  # real cloud gaps
    model, metrics = train_abundance(data, TrainParams(**{**PARAMS.to_dict(), "epochs": 80, "batch_size": 32}))
    m, b = metrics["model"], metrics["mean_abundance_baseline"]
    print(
        f"eolearn-slovenia 50 m cells: RMSE {m['rmse']:.4f} MAE {m['mae']:.4f} R2 {m['r2']:.3f}; "
        f"mean-abundance baseline RMSE {b['rmse']:.4f} MAE {b['mae']:.4f} R2 {b['r2']:.3f}"
    )
    assert m["rmse"] < b["rmse"]
    assert m["mae"] < b["mae"]


def test_labels_not_summing_to_one_and_empty_series(caplog: pytest.LogCaptureFixture) -> None:
    f, valid, n = clean_fractions(np.array([[0.5, 0.7], [0.2, 0.8], [0, 0], [np.nan, 1]]))
    assert n == 1 and valid.tolist() == [True, True, False, False]
    np.testing.assert_allclose(f[0], [0.5 / 1.2, 0.7 / 1.2])
    data, _ = generated_mixtures(rows=20, cols=20)
    data.series[:7] = np.nan
    data.fractions[10:15] *= 1.3
    with caplog.at_level("WARNING"):
        model, metrics = train_abundance(data, TrainParams(**{**PARAMS.to_dict(), "epochs": 3}))
    assert "5 label row(s) did not sum to 1" in caplog.text
    assert "7 pixel(s) skipped: every time-series value is missing" in caplog.text
    pred = model.predict(data.series[:10], data.ancillary[:10])
    assert np.isnan(pred[:7]).all() and np.isfinite(pred[7:]).all()


def test_wrong_inputs_to_a_model(mixture_model: tuple) -> None:
    data, _, model, _ = mixture_model
    with pytest.raises(ModelError, match="expects"):
        model.predict(data.series[:5, :, :2], data.ancillary[:5])
    with pytest.raises(ModelError, match="ancillary"):
        model.predict(data.series[:5], data.ancillary[:5, :1])
    with pytest.raises(InputValidationError, match="usable samples"):
        small, _ = generated_mixtures(rows=3, cols=3)
        train_abundance(small, PARAMS)
