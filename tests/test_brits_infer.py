"""The fast BRITS inference path (models/brits_infer.py) is the same function as the network's
eval-mode forward: same abundances, nested N2 fractions and gap-filled series, on random
networks of several sizes and feature counts, irregular time steps, fully missing steps and
series; and its packing of raw series equals the training path's tensors exactly."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from landcoverpy.models import brits_infer
from landcoverpy.models.abundance import (
    AbundanceData,
    Normalisation,
    TrainParams,
    prepare_tensors,
    time_major_inputs,
    train_abundance,
)
from landcoverpy.models.brits import BRITSAbundance


def raw_series(n: int, steps: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance-like series with random and whole-step gaps, a fully missing series, an inf."""
    rng = np.random.default_rng(seed)
    x = (0.1 + 0.3 * rng.random((n, steps, features))).astype("float32")
    x[rng.random((n, steps)) < 0.3] = np.nan  # cloudy steps (all bands)
    x[rng.random(x.shape) < 0.1] = np.nan  # single-band gaps
    x[:, 0, :] = np.where(rng.random((n, features)) < 0.5, np.nan, x[:, 0, :])  # first and last steps
    x[:, -1, :] = np.where(rng.random((n, features)) < 0.5, np.nan, x[:, -1, :])
    x[3] = np.nan
    x[5, 2, 0] = np.inf
    anc = rng.normal(size=(n, 2)).astype("float32")
    return x, anc


def norm_for(features: int) -> Normalisation:
    return Normalisation([0.25] * features, [0.09] * features, [0.0, 0.0], [1.0, 1.0])


@pytest.mark.parametrize("times", [None, "irregular"])
@pytest.mark.parametrize("features", [1, 7, 10])
def test_packing_equals_the_training_tensors(features: int, times: str | None) -> None:
    steps = 12
    series, anc = raw_series(300, steps, features, seed=features)
    t = None if times is None else np.cumsum(np.random.default_rng(1).integers(1, 4, steps)).astype("float32")
    ref = prepare_tensors(series, anc, norm_for(features), t)
    values, gaps_mask, anc_out = time_major_inputs(series, anc, norm_for(features), t)
    want_values, want_gaps_mask = brits_infer.pack(
        *(torch.from_numpy(np.ascontiguousarray(ref[k])) for k in ("x", "m", "d_fwd", "d_bwd"))
    )
    np.testing.assert_array_equal(values.numpy(), want_values.numpy())
    np.testing.assert_array_equal(gaps_mask.numpy(), want_gaps_mask.numpy())
    np.testing.assert_array_equal(anc_out, ref["anc"])
    # reused buffers give the same numbers
    again = time_major_inputs(
        series, anc, norm_for(features), t, out=(torch.full_like(values, np.nan), torch.full_like(gaps_mask, np.inf))
    )
    np.testing.assert_array_equal(again[1].numpy(), gaps_mask.numpy())


@pytest.mark.parametrize(
    ("features", "hidden", "parents"), [(7, 32, [0, 0, 1, 2, 2, 2]), (1, 8, None), (10, 16, [1, 0, 1])]
)
def test_fast_path_equals_the_network(features: int, hidden: int, parents: list[int] | None) -> None:
    torch.manual_seed(features)
    network = BRITSAbundance(features, 2, 3, hidden=hidden, ancillary_hidden=8, parents=parents).eval()
    with torch.no_grad():  # larger weights than the initialisation: saturated gates, strong decays
        for p in network.parameters():
            p.mul_(3)
    series, anc = raw_series(257, 15, features, seed=hidden)
    t = np.cumsum(np.random.default_rng(2).integers(1, 5, 15)).astype("float32")
    ref_in = prepare_tensors(series, anc, norm_for(features), t)
    values, gaps_mask, anc_n = time_major_inputs(series, anc, norm_for(features), t)
    with torch.inference_mode():
        want = network(
            *(torch.from_numpy(np.ascontiguousarray(ref_in[k])) for k in ("x", "m", "d_fwd", "d_bwd")),
            torch.from_numpy(ref_in["anc"]),
        )
        got = brits_infer.run(network, values, gaps_mask, torch.from_numpy(anc_n), imputed=True)
    keys = ["abundance", "imputed"] + (["sub_abundance"] if parents else [])
    assert set(got) == set(keys)
    for key in keys:
        assert got[key].shape == want[key].shape
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-4, atol=2e-5, err_msg=key)
    assert np.isfinite(got["abundance"].numpy()).all()


def test_fast_path_refuses_training_mode() -> None:
    network = BRITSAbundance(3, 0, 2, hidden=8)
    values, gaps_mask = brits_infer.pack(
        torch.zeros(4, 5, 3), torch.ones(4, 5, 3), torch.ones(4, 5, 3), torch.ones(4, 5, 3)
    )
    with pytest.raises(RuntimeError, match="eval"):
        brits_infer.run(network, values, gaps_mask, None)


def test_model_predict_and_impute_use_it_batch_by_batch() -> None:
    """A trained model's predictions and imputations through the fast path (several batches, the
    last one shorter) equal the network's forward on the training path's tensors."""
    rng = np.random.default_rng(0)
    series, anc = raw_series(600, 10, 4, seed=3)
    series[5, 2, 0] = np.nan
    fractions = rng.dirichlet(np.ones(3), size=600).astype("float32")
    times = np.cumsum(rng.integers(1, 3, 10)).astype("float32")
    data = AbundanceData(series, anc, fractions, np.arange(600) // 50, ["a", "b", "c"], times=times)
    torch.set_num_threads(2)
    model, _ = train_abundance(
        data,
        TrainParams(
            hidden=8,
            ancillary_hidden=4,
            epochs=2,
            patience=2,
            batch_size=64,
            seed=0,
            threads=1,
            model_type="brits",
            device="cpu",
        ),
    )
    assert torch.get_num_threads() == 2  # training's own thread count does not outlive it
    ref_in = prepare_tensors(series, anc, model.normalisation, np.asarray(model.times, "float32"))
    network = model.network.eval()
    with torch.inference_mode():
        want = network(
            *(torch.from_numpy(np.ascontiguousarray(ref_in[k])) for k in ("x", "m", "d_fwd", "d_bwd")),
            torch.from_numpy(ref_in["anc"]),
        )
    torch.set_num_threads(2)  # rows shared by 2 Python threads of one torch thread each
    pred = model.predict(series, anc, batch_size=256, device="cpu")  # 256 + 256 + 88
    assert torch.get_num_threads() == 2  # restored
    full = np.isfinite(series).any(axis=(1, 2))
    np.testing.assert_allclose(pred[full], want["abundance"].numpy()[full], rtol=1e-4, atol=1e-6)
    assert np.isnan(pred[~full]).all()
    assert np.isnan(model.predict(series[~full], anc[~full])).all()  # nothing to compute: no network call
    imputed = model.impute(series, anc, device="cpu")
    std, mean = (np.asarray(v, "float32") for v in (model.normalisation.series_std, model.normalisation.series_mean))
    np.testing.assert_allclose(imputed, want["imputed"].numpy() * std + mean, rtol=1e-4, atol=1e-5)


def test_training_runs_the_network_on_one_thread_unless_told(caplog: pytest.LogCaptureFixture) -> None:
    """threads=0 trains the network on one torch thread (its steps are too small to split, and
    OpenMP threads spin-wait on busy cores); an explicit count is used as given; either way the
    caller's thread count comes back."""
    rng = np.random.default_rng(1)
    series, anc = raw_series(200, 6, 2, seed=4)
    data = AbundanceData(
        series, anc, rng.dirichlet(np.ones(2), size=200).astype("float32"), np.arange(200) // 20, ["a", "b"]
    )
    torch.set_num_threads(2)
    for threads, said in ((0, "cpu (1 thread)"), (2, "cpu (2 threads)")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="landcoverpy"):
            train_abundance(
                data,
                TrainParams(
                    hidden=4,
                    ancillary_hidden=2,
                    epochs=1,
                    patience=1,
                    batch_size=64,
                    seed=0,
                    threads=threads,
                    model_type="brits",
                    device="cpu",
                ),
            )
        assert f"training BRITS on {said}" in caplog.text
        assert torch.get_num_threads() == 2
