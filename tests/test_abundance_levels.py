"""Abundance at the seed's fidelity: 8-day steps recorded and enforced, one model of both levels
whose N2 fractions add up to its N1 fractions, a random-forest model type, new regions without
labels, training settings from a config file, and the torch device choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from landcoverpy.errors import InputValidationError, ModelError
from landcoverpy.models.abundance import (
    AbundanceModel,
    TrainParams,
    consistency_error,
    consistent_fractions,
    forest_features,
    linear_interpolation,
    train_abundance,
)
from landcoverpy.timesteps import parse_step
from tests.abundance_data import generated_mixtures
from tests.test_abundance_cli import make_area
from tests.test_cli_status import run_cli

FAST = TrainParams(hidden=24, ancillary_hidden=8, epochs=25, patience=6, batch_size=128, seed=0, trees=60)


def test_steps_of_a_year() -> None:
    eight = parse_step(None)
    assert eight.name == "8day" and len(eight.bins(2021)) == 46 and len(eight.bins(2020)) == 46  # leap year too
    starts = [a.timetuple().tm_yday for a, _ in eight.bins(2021)]
    assert starts[:3] == [1, 9, 17] and starts[-1] == 361  # MOD09A1's composite start days
    assert eight.bins(2021)[-1][1].isoformat() == "2021-12-31"
    assert len(parse_step("monthly").bins(2021)) == 12
    assert len(parse_step("16d").bins(2021)) == 23
    assert parse_step(None, 8).name == "8day" and parse_step(None, 10).name == "10d"
    with pytest.raises(InputValidationError, match="unknown time step 'weekly'"):
        parse_step("weekly")


def test_forest_features_are_the_interpolated_series_then_ancillaries() -> None:
    """forest_features writes the interpolation straight into its matrix: the same values as
    interpolating alone, flattened, then the ancillaries; gaps never filled take ``fill``."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1000, 46, 7)).astype("float32")
    x[rng.uniform(size=x.shape) < 0.4] = np.nan
    x[3] = np.nan
    x[5, :, 2] = np.inf  # not an observation either
    t = np.cumsum(rng.uniform(4, 12, 46)).astype("float32")
    anc = rng.normal(size=(1000, 3)).astype("float32")
    whole = linear_interpolation(x, t)
    assert np.isnan(whole[3]).all() and np.isnan(whole[5, :, 2]).all() and np.isfinite(whole[:3]).all()
    plain = forest_features(x, anc, t)
    np.testing.assert_array_equal(plain, np.concatenate([whole.reshape(1000, -1), anc], axis=1))
    fill = rng.normal(size=46 * 7 + 3).astype("float32").tolist()
    filled = forest_features(x, anc, t, fill)
    gaps = ~np.isfinite(plain)
    assert gaps.any() and np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[gaps], np.broadcast_to(np.asarray(fill, "float32"), plain.shape)[gaps])
    np.testing.assert_array_equal(filled[~gaps], plain[~gaps])
    assert linear_interpolation(x[:0], t).shape == (0, 46, 7)
    with pytest.raises(ValueError, match="out must be float32"):
        linear_interpolation(x, t, out=np.empty((1000, 46, 7), "float64"))


def test_linear_interpolation_vectorised_matches_numpy_interp() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 20, 3)).astype("float32")
    x[rng.uniform(size=x.shape) < 0.5] = np.nan
    x[0, :, 1] = np.nan  # never observed
    t = np.cumsum(rng.uniform(1, 9, 20))
    got = linear_interpolation(x, t)
    np.testing.assert_array_equal(linear_interpolation(x), linear_interpolation(x, np.arange(20)))
    for i in range(0, 200, 7):
        for d in range(3):
            ok = np.isfinite(x[i, :, d])
            if ok.any():
                np.testing.assert_allclose(got[i, :, d], np.interp(t, t[ok], x[i, ok, d]), rtol=1e-5, atol=1e-6)
            else:
                assert np.isnan(got[i, :, d]).all()


def two_level(seed: int = 0) -> tuple:
    """Generated mixtures of 4 fine classes; N1 = {A: fine 0+1, B: fine 2+3}; N2 = the 4 classes."""
    data, _ = generated_mixtures(n_classes=4, seed=seed)
    n2 = data.fractions
    n1 = np.stack([n2[:, 0] + n2[:, 1], n2[:, 2] + n2[:, 3]], axis=1)
    data.fractions, data.classes = n1.astype("float32"), ["A", "B"]
    data.sub_fractions, data.sub_classes, data.parents = n2, ["a1", "a2", "b1", "b2"], [0, 0, 1, 1]
    return data


# BRITS alone in the slow pass: the ensemble holds a BRITS model too
@pytest.mark.parametrize("kind", [pytest.param("brits", marks=pytest.mark.slow), "forest", "ensemble"])
def test_one_model_of_both_levels_is_consistent_by_construction(kind: str) -> None:
    data = two_level()
    model, metrics = train_abundance(data, TrainParams(**{**FAST.to_dict(), "model_type": kind}))
    assert metrics["model_type"] == kind and set(metrics["levels"]) == {"N1", "N2"}
    assert (
        model.kind == kind
        and (model.network is None) == (kind == "forest")
        and (model.forest is None) == (kind == "brits")
    )
    for level in ("N1", "N2"):
        m, b = metrics["levels"][level], metrics["baseline_levels"][level]
        assert {"rmse", "mae", "r2"} <= set(m["per_class"][model.level_classes(level)[0]])
        assert m["rmse"] < b["rmse"], (level, m["rmse"], b["rmse"])
    assert metrics["consistency_error"] < 1e-5
    pred = model.predict(data.series, data.ancillary)
    assert pred.shape == (len(data.series), 6)
    ok = np.isfinite(pred).all(axis=1)
    np.testing.assert_allclose(pred[ok, 2] + pred[ok, 3], pred[ok, 0], atol=1e-5)
    np.testing.assert_allclose(pred[ok, 4] + pred[ok, 5], pred[ok, 1], atol=1e-5)
    np.testing.assert_allclose(pred[ok, :2].sum(axis=1), 1, atol=1e-5)


def test_auto_keeps_the_better_model_and_reports_both() -> None:
    data, _ = generated_mixtures(seed=4)
    model, metrics = train_abundance(data, FAST)
    cands = metrics["candidates"]
    assert set(cands) == {"brits", "forest", "ensemble"}
    assert metrics["model_type"] == model.kind
    if metrics["model_type"] != "forest":  # only with a lead on the validation blocks
        assert cands[model.kind]["validation_rmse"] < cands["forest"]["validation_rmse"]
    assert metrics["model"]["rmse"] == pytest.approx(cands[model.kind]["N1"]["rmse"])


def test_the_ensemble_is_the_mean_of_its_members() -> None:
    data, _ = generated_mixtures(seed=5, rows=30, cols=30)
    params = TrainParams(**{**FAST.to_dict(), "epochs": 4, "model_type": "ensemble"})
    model, metrics = train_abundance(data, params)
    assert metrics["model_type"] == "ensemble" and set(metrics["candidates"]) == {"brits", "forest", "ensemble"}
    data.series[:5] = np.nan  # nothing observed: no estimate
    got = model.predict(data.series, data.ancillary)
    brits = AbundanceModel(**{**model.__dict__, "kind": "brits"}).predict(data.series, data.ancillary)
    forest = AbundanceModel(**{**model.__dict__, "kind": "forest"}).predict(data.series, data.ancillary)
    assert np.isnan(got[:5]).all()
    np.testing.assert_allclose(got[5:], (brits[5:] + forest[5:]) / 2, atol=1e-6)
    assert np.abs(brits[5:] - forest[5:]).max() > 0.01  # two different members, not one model twice
    np.testing.assert_allclose(got[5:].sum(axis=1), 1.0, atol=1e-5)
    # BRITS imputes the ensemble's series (a forest model interpolates linearly)
    np.testing.assert_allclose(
        model.impute(data.series[5:50], data.ancillary[5:50]),
        AbundanceModel(**{**model.__dict__, "kind": "brits"}).impute(data.series[5:50], data.ancillary[5:50]),
    )


def test_the_one_standard_error_rule() -> None:
    from landcoverpy.models.abundance import choose_model

    rng = np.random.default_rng(0)
    forest = rng.uniform(0.01, 0.02, 400)
    assert choose_model({"brits": forest * 0.5, "forest": forest}) == "brits"  # clearly better
    noise = rng.normal(0, 0.01, 400)
    noise -= noise.mean()  # paired differences with mean -0.0001 and standard error ~0.0005
    assert choose_model({"brits": forest + noise - 0.0001, "forest": forest}) == "forest"  # a lead within the noise
    assert choose_model({"brits": forest + noise - 0.002, "forest": forest}) == "brits"  # a lead beyond it
    assert choose_model({"brits": forest[:20] * 0.5, "forest": forest[:20]}) == "forest"  # 20 pixels: no evidence
    assert choose_model({"forest": forest}) == "forest"
    # three candidates: of those with a lead beyond one standard error, the lowest error
    assert choose_model({"brits": forest * 0.6, "forest": forest, "ensemble": forest * 0.5}) == "ensemble"
    assert choose_model({"brits": forest * 0.5, "forest": forest, "ensemble": forest * 0.6}) == "brits"
    # the ensemble's lead is beyond the noise, BRITS's lower mean is not: the ensemble
    assert (
        choose_model({"brits": forest + noise * 8 - 0.003, "forest": forest, "ensemble": forest + noise - 0.002})
        == "ensemble"
    )
    assert choose_model({"brits": forest * 1.2, "forest": forest, "ensemble": forest + noise - 0.0001}) == "forest"
    # by block: a lead on every pixel of two blocks and a larger loss on every pixel of a third is
    # three blocks' worth of evidence, not 400 pixels'
    blocks = np.repeat([0, 1, 2], [150, 150, 100])
    mixed = np.where(blocks < 2, forest - 0.004, forest + 0.005)
    assert choose_model({"brits": mixed, "forest": forest}) == "brits"  # pixel-wise: a clear lead
    assert choose_model({"brits": mixed, "forest": forest}, blocks) == "forest"  # block-wise: within the noise
    assert choose_model({"brits": forest - 0.004, "forest": forest}, blocks) == "brits"  # better in every block
    assert choose_model({"brits": forest - 0.004, "forest": forest}, np.zeros(400, int)) == "forest"  # one block
    # two blocks that both lean to BRITS, one by a tenth of the other: not a lead beyond the noise
    # of two samples (Student's t at 1 degree of freedom, 1.84 standard errors), equal leads are
    two = np.repeat([0, 1], 200)
    unequal = np.where(two == 0, forest - 0.004, forest - 0.0004)
    assert choose_model({"brits": unequal, "forest": forest}, two) == "forest"
    assert choose_model({"brits": np.where(two == 0, forest - 0.004, forest - 0.003), "forest": forest}, two) == "brits"


def test_one_standard_error_factor_is_students_t() -> None:
    from landcoverpy.models.abundance import one_se_factor

    # Student's t quantile with n - 1 degrees of freedom at the normal's one-standard-error
    # probability, Phi(1) = 0.841345: t(0.841345; 1 df) = tan(pi (0.841345 - 0.5)) = 1.8373 (the t
    # distribution with 1 df is the Cauchy), t(0.841345; 5 df) = 1.1103 (scipy.stats.t.ppf; between
    # the 0.80 and 0.90 columns of any t table: 0.920 and 1.476 for 5 df)
    assert one_se_factor(2) == pytest.approx(1.8373, abs=1e-3)
    assert one_se_factor(6) == pytest.approx(1.1103, abs=1e-3)
    assert 1.0 < one_se_factor(400) < 1.003  # many samples: the normal one standard error
    assert [one_se_factor(n) for n in range(2, 30)] == sorted((one_se_factor(n) for n in range(2, 30)), reverse=True)


def test_regression_outputs_become_consistent_fractions() -> None:
    top = np.array([[0.7, 0.5], [-0.1, 0.3], [0.0, 0.0]])
    sub = np.array([[0.2, 0.2, 0.0], [0.1, -0.2, 0.5], [0.0, 0.0, 0.0]])
    t, s = consistent_fractions(top, sub, [0, 0, 1])
    np.testing.assert_allclose(t.sum(axis=1), 1, atol=1e-6)
    assert (t >= 0).all() and (s >= 0).all()
    assert consistency_error(t, s, [0, 0, 1]) < 1e-6
    np.testing.assert_allclose(s[2], [0.25, 0.25, 0.5], atol=1e-6)  # nothing known: equal shares of each parent


def test_a_model_refuses_a_series_of_other_steps() -> None:
    data, _ = generated_mixtures(rows=20, cols=20)
    model, _ = train_abundance(
        data, TrainParams(**{**FAST.to_dict(), "epochs": 2, "model_type": "brits"}), step="monthly"
    )
    with pytest.raises(ModelError, match="12 .*monthly"):
        model.predict(np.zeros((3, 46, data.series.shape[2]), "float32"), data.ancillary[:3])


def test_settings_from_a_file_with_bad_keys_named(tmp_path: Path) -> None:
    with pytest.raises(InputValidationError, match="cfg.json: unknown setting 'hiden'"):
        TrainParams.from_mapping({"hiden": 3}, "cfg.json")
    with pytest.raises(InputValidationError, match="batch_size: 'big' is not a int"):
        TrainParams.from_mapping({"batch_size": "big"}, "cfg.json")
    with pytest.raises(InputValidationError, match="model_type 'svm'"):
        TrainParams.from_mapping({"model_type": "svm"}, "cfg.json")
    p = TrainParams.from_mapping({"hidden": 16, "learning_rate": 0.01, "device": "cpu"}, "cfg.json")
    assert p.hidden == 16 and p.learning_rate == 0.01
    assert "device" not in p.identity() and "threads" not in p.identity() and p.identity()["hidden"] == 16


def test_the_networks_loss_is_a_setting_and_mse_keeps_the_ids_of_before() -> None:
    from dataclasses import asdict

    with pytest.raises(InputValidationError, match="loss 'hinge': use mse, cross_entropy"):
        TrainParams.from_mapping({"loss": "hinge"}, "cfg.json")
    assert TrainParams().loss == "cross_entropy" and TrainParams().identity()["loss"] == "cross_entropy"
    # models trained before the setting existed used mse and had no "loss" in their identity
    before = {k: v for k, v in asdict(TrainParams(loss="mse")).items() if k not in ("threads", "device", "loss")}
    assert TrainParams(loss="mse").identity() == before


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_both_losses_learn_both_levels(loss: str) -> None:
    data = two_level(seed=1)
    params = TrainParams(**{**FAST.to_dict(), "model_type": "brits", "epochs": 10, "loss": loss})
    model, metrics = train_abundance(data, params)
    assert model.params["loss"] == loss
    for level in ("N1", "N2"):
        m, b = metrics["levels"][level], metrics["baseline_levels"][level]
        assert m["rmse"] < 0.7 * b["rmse"], (loss, level, m["rmse"], b["rmse"])
    assert metrics["consistency_error"] < 1e-5


def test_devices_on_a_machine_without_a_gpu() -> None:
    import torch

    from landcoverpy.models.device import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="sees no CUDA GPU.*--device cpu"):
            resolve_device("cuda")
    data, _ = generated_mixtures(rows=20, cols=20)
    model, _ = train_abundance(
        data, TrainParams(**{**FAST.to_dict(), "epochs": 2, "model_type": "brits", "device": "auto"})
    )
    a = model.predict(data.series, data.ancillary, device="cpu")
    b = model.predict(data.series, data.ancillary, device="auto", batch_size=37)  # other batches, same answer
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("abundance-levels")
    p = make_area(root)
    with rasterio.open(p["n1"]) as src:
        n1, profile = src.read(1), src.profile
    rng = np.random.default_rng(1)
    from scipy import ndimage

    split = ndimage.gaussian_filter(rng.normal(size=n1.shape), 8) > 0
    n2 = np.where(n1 == 1, np.where(split, 2, 5), np.where(n1 == 2, 3, 4)).astype("uint8")  # forest: conifer|broadleaf
    p["n2"] = root / "n2_nested.tif"
    with rasterio.open(p["n2"], "w", **profile) as dst:
        dst.write(n2, 1)
    return root, p


@pytest.mark.slow  # ~55 s: dataset, training of both model types, maps, impute, a new region
def test_both_levels_from_the_cli_new_region_and_steps(area: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    root, p = area
    env = {"LANDCOVERPY_HOME": str(tmp_path / "home"), "TMP_DIR": str(tmp_path / "tmp"), "DASK_N_WORKERS": "1"}
    res = run_cli(
        [
            "abundance",
            "dataset",
            "--series",
            str(p["series"]),
            "--year",
            "2021",
            "--n1-map",
            str(p["n1"]),
            "--n1-labels",
            str(p["n1_labels"]),
            "--n2-map",
            str(p["n2"]),
            "--n2-labels",
            str(p["n2_labels"]),
            "--ancillary",
            f"altitude={p['altitude']}",
            "--block-km",
            "2",
        ],
        env,
        root,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "46 steps (MOD09A1 8-day composites)" in res.stdout
    parents = dict(x.split(" -> ") for x in res.stdout.split("N2 parents: ")[1].strip().split(", "))
    assert parents == {"conifer": "forest", "broadleaf": "forest", "crop_n2": "crop", "urban_n2": "urban"}
    cfg = tmp_path / "train.yaml"
    # the ensemble: a network and a forest saved, loaded, predicting and imputing together
    cfg.write_text("hidden: 24\nancillary_hidden: 8\nepochs: 20\npatience: 5\ntrees: 60\nmodel_type: ensemble\n")
    res = run_cli(
        [
            "abundance",
            "train",
            "--level",
            "both",
            "--config",
            str(cfg),
            "--learning-rate",
            "0.004",
            "--device",
            "cpu",
            "--no-progress",
        ],
        env,
        root,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    model_id = res.stdout.split(":")[0].strip()
    assert "consistency error" in res.stdout and "N2" in res.stdout and "brits" in res.stdout and "forest" in res.stdout
    assert "ensemble model" in res.stdout and "candidate ensemble" in res.stdout  # kept, its members beside it
    meta_file = next((tmp_path / "home").rglob("metadata.json"))
    meta = json.loads(meta_file.read_text())
    assert meta["kind"] == "ensemble" and meta["files"] == ["model.joblib", "model.pt"]
    assert {f.name for f in meta_file.parent.iterdir()} >= {"model.joblib", "model.pt"}
    assert meta["params"]["hidden"] == 24 and meta["params"]["learning_rate"] == 0.004 and meta["step"] == "8day"
    assert len(meta["steps"]) == 46
    res = run_cli(
        ["abundance", "predict", "--level", "both", "--output-dir", str(tmp_path / "out"), "--device", "auto"],
        env,
        root,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    with (
        rasterio.open(tmp_path / "out" / "abundance_N1.tif") as a,
        rasterio.open(tmp_path / "out" / "abundance_N2.tif") as b,
    ):
        n1, n2, names2 = a.read(), b.read(), b.descriptions
        assert a.descriptions == ("forest", "crop", "urban")
    ok = np.isfinite(n1).all(axis=0)
    assert ok.mean() > 0.9
    np.testing.assert_allclose(n1.sum(axis=0)[ok], 1.0, atol=1e-4)
    par = [("forest", "crop", "urban").index(parents[c]) for c in names2]
    for k in range(3):
        members = [i for i, q in enumerate(par) if q == k]
        np.testing.assert_allclose(n2[members].sum(axis=0)[ok], n1[k][ok], atol=1e-4)
    # the gap-filled series: one COG per 8-day step, the bands then a QA band
    res = run_cli(
        ["abundance", "impute", "--model-id", model_id, "--output-dir", str(tmp_path / "series")],
        env,
        root,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    files = sorted((tmp_path / "series").glob("series_*.tif"))
    assert len(files) == 46 and files[0].name == "series_01_2021-01-01.tif"
    observed_steps = 0
    for f in files:
        with rasterio.open(f) as src:
            assert src.count == 4 and src.descriptions[-1].startswith("qa")
            values, qa = src.read()[:3], src.read(4)
        assert set(np.unique(qa[np.isfinite(qa)])) <= {0.0, 1.0}
        assert np.isfinite(values[:, np.isfinite(qa)]).all()  # every pixel with data is filled
        observed_steps += int((qa == 0).any())
    assert 15 <= observed_steps <= 30  # the series has two dates a month: about half the 8-day steps see one
    # a new region without labels (the same sensor, 20 % brighter), mapped with the trained model
    series2 = tmp_path / "region2"
    series2.mkdir()
    items = json.loads(p["series"].read_text())
    for it in items:
        with rasterio.open(p["series"].parent / it["path"]) as src:
            prof, arr, names = src.profile, src.read(), src.descriptions
        out = series2 / Path(it["path"]).name
        with rasterio.open(out, "w", **prof) as dst:
            dst.write(arr * 1.2)
            dst.descriptions = names
        it["path"] = str(out)
    (series2 / "series.json").write_text(json.dumps(items))
    res = run_cli(
        [
            "abundance",
            "dataset",
            "--unlabelled",
            "--series",
            str(series2 / "series.json"),
            "--year",
            "2021",
            "--ancillary",
            f"altitude={p['altitude']}",
        ],
        env,
        root,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "levels none (unlabelled)" in res.stdout
    new_id = res.stdout.split(":")[0].strip()
    res = run_cli(
        [
            "abundance",
            "predict",
            "--level",
            "N2",
            "--model-id",
            model_id,
            "--dataset-id",
            new_id,
            "--output-dir",
            str(tmp_path / "out2"),
        ],
        env,
        root,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    with rasterio.open(tmp_path / "out2" / "abundance_N2.tif") as src:
        cube = src.read()
    total = cube.sum(axis=0)
    assert np.isfinite(total).mean() > 0.9
    np.testing.assert_allclose(total[np.isfinite(total)], 1.0, atol=1e-4)
    # the same region cut into months: the 8-day model refuses it, naming both step kinds
    res = run_cli(
        [
            "abundance",
            "dataset",
            "--unlabelled",
            "--series",
            str(series2 / "series.json"),
            "--year",
            "2021",
            "--ancillary",
            f"altitude={p['altitude']}",
            "--step",
            "monthly",
        ],
        env,
        root,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    monthly_id = res.stdout.split(":")[0].strip()
    res = run_cli(
        [
            "abundance",
            "predict",
            "--level",
            "N1",
            "--model-id",
            model_id,
            "--dataset-id",
            monthly_id,
            "--output-dir",
            str(tmp_path / "out3"),
        ],
        env,
        root,
        timeout=300,
    )
    assert res.returncode == 1
    assert "8day" in res.stderr and "monthly" in res.stderr and "Traceback" not in res.stderr
    # bad settings are named, before anything is trained
    bad = tmp_path / "bad.json"
    bad.write_text('{"hidden": 8, "learnin_rate": 0.1}')
    res = run_cli(["abundance", "train", "--level", "N1", "--config", str(bad)], env, root, timeout=120)
    assert res.returncode == 1 and "bad.json" in res.stderr and "learnin_rate" in res.stderr


@pytest.mark.parametrize("kind", ["forest", pytest.param("brits", marks=pytest.mark.slow)])
def test_label_weights_discount_unreliable_labels(kind: str) -> None:
    """A third of the labels are wrong (random fractions) and flagged by a low confidence, as
    the mean confidence of a fine map would flag them: weighting beats trusting them all."""
    data, _ = generated_mixtures(seed=6)
    rng = np.random.default_rng(0)
    truth = data.fractions.copy()
    bad = rng.uniform(size=len(truth)) < 0.35
    data.fractions = np.where(bad[:, None], rng.dirichlet(np.ones(3) * 0.5, size=len(truth)), truth).astype("float32")
    params = TrainParams(**{**FAST.to_dict(), "model_type": kind, "epochs": 40})
    plain, _ = train_abundance(data, params)
    data.weights = np.where(bad, 0.05, 0.95).astype("float32")
    weighted, _ = train_abundance(data, params)
    rmse = {
        name: float(np.sqrt(np.nanmean((m.predict(data.series, data.ancillary) - truth) ** 2)))
        for name, m in (("plain", plain), ("weighted", weighted))
    }
    print(kind, rmse)
    assert rmse["weighted"] < rmse["plain"]


def test_confidence_beside_the_projects_map_weights_the_labels(
    area: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    root, p = area
    with rasterio.open(p["n1"]) as src:
        n1, profile = src.read(1), src.profile
    ours = tmp_path / "classification_30SUF.tif"
    with rasterio.open(ours, "w", **profile) as dst:
        dst.write(n1, 1)
    conf = np.where(np.arange(n1.shape[1])[None, :] < n1.shape[1] // 2, 90, 40) * np.ones_like(n1)
    with rasterio.open(tmp_path / "confidence_30SUF.tif", "w", **(profile | {"nodata": 0})) as dst:
        dst.write(conf.astype("uint8"), 1)
    env = {"LANDCOVERPY_HOME": str(tmp_path / "home"), "TMP_DIR": str(tmp_path / "tmp")}
    args = [
        "abundance",
        "dataset",
        "--series",
        str(p["series"]),
        "--year",
        "2021",
        "--n1-map",
        str(ours),
        "--n1-labels",
        str(p["n1_labels"]),
        "--step",
        "monthly",
    ]
    res = run_cli(args, env, root, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "N1 labels weighted by the mean confidence of" in res.stdout and "confidence_30SUF.tif" in res.stdout
    import pandas as pd

    table = pd.read_parquet(next((tmp_path / "home").rglob("abundance-*.parquet")))
    w = table["weight__N1"].to_numpy().reshape(24, 24)
    np.testing.assert_allclose(w[:, :12], 0.9, atol=1e-5)
    np.testing.assert_allclose(w[:, 12:], 0.4, atol=1e-5)
    res = run_cli(
        args + ["--no-confidence-weights"], {**env, "LANDCOVERPY_HOME": str(tmp_path / "home2")}, root, timeout=300
    )
    assert res.returncode == 0 and "weighted" not in res.stdout
