"""Abundance (soft classification) with BRITS: data preparation, training with early stopping on
a spatial-block split, prediction, metrics and fine-tuning. Arrays in, arrays out; storing and
raster IO live in :mod:`landcoverpy.pipeline.abundance`.

Data layout: ``series`` (N, T, D) float with NaN where a value is missing (cloud, QA, gap);
``ancillary`` (N, A); ``fractions`` (N, K) class fractions per pixel; ``blocks`` (N,) spatial
block ids for the split.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from landcoverpy.errors import InputValidationError, ModelError

log = logging.getLogger(__name__)


@dataclass
class AbundanceData:
    series: np.ndarray
    ancillary: np.ndarray
    fractions: np.ndarray
    blocks: np.ndarray
    classes: list[str]
    times: np.ndarray | None = None  # time of each step (days); regular steps when None

    def subset(self, idx: np.ndarray) -> AbundanceData:
        return AbundanceData(self.series[idx], self.ancillary[idx], self.fractions[idx], self.blocks[idx],
                             self.classes, self.times)

    def __len__(self) -> int:
        return len(self.series)


@dataclass
class TrainParams:
    hidden: int = 64
    ancillary_hidden: int = 32
    dropout: float = 0.1
    epochs: int = 150
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 15
    seed: int = 0
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    weight_imputation: float = 0.3
    weight_consistency: float = 0.1
    threads: int = 0  # torch intra-op threads; 0 = torch's default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Normalisation:
    """Statistics from the training split only, stored with the model (never hard-coded)."""

    series_mean: list[float]
    series_std: list[float]
    ancillary_mean: list[float]
    ancillary_std: list[float]

    @classmethod
    def fit(cls, data: AbundanceData) -> Normalisation:
        s = data.series.reshape(-1, data.series.shape[-1])
        with np.errstate(all="ignore"):
            sm, ss = np.nanmean(s, axis=0), np.nanstd(s, axis=0)
            am, as_ = (np.nanmean(data.ancillary, axis=0), np.nanstd(data.ancillary, axis=0)) \
                if data.ancillary.shape[1] else (np.zeros(0), np.zeros(0))
        fix = lambda a, d: np.where(np.isfinite(a), a, d)  # noqa: E731
        return cls(fix(sm, 0).tolist(), np.maximum(fix(ss, 1), 1e-6).tolist(),
                   fix(am, 0).tolist(), np.maximum(fix(as_, 1), 1e-6).tolist())

    def apply(self, series: np.ndarray, ancillary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = (series - np.asarray(self.series_mean, "float32")) / np.asarray(self.series_std, "float32")
        a = (ancillary - np.asarray(self.ancillary_mean, "float32")) / np.asarray(self.ancillary_std, "float32") \
            if ancillary.shape[1] else ancillary
        return s.astype("float32"), np.nan_to_num(a.astype("float32"))


def deltas(mask: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
    """BRITS time gaps: for each step and feature, the time since the last observation
    (``delta_t = s_t - s_{t-1} + delta_{t-1}`` when step t-1 was missing, else ``s_t - s_{t-1}``)."""
    n, steps, d = mask.shape
    t = np.arange(steps, dtype="float32") if times is None else np.asarray(times, dtype="float32")
    out = np.zeros(mask.shape, dtype="float32")
    for i in range(1, steps):
        gap = t[i] - t[i - 1]
        out[:, i] = gap + np.where(mask[:, i - 1] > 0, 0.0, out[:, i - 1])
    return out


def prepare_tensors(series: np.ndarray, ancillary: np.ndarray, norm: Normalisation,
                    times: np.ndarray | None) -> dict[str, np.ndarray]:
    values, anc = norm.apply(series, ancillary)
    mask = np.isfinite(values).astype("float32")
    values = np.nan_to_num(values, nan=0.0)
    rev_times = None if times is None else (times[-1] - times[::-1])
    return {"x": values, "m": mask, "d_fwd": deltas(mask, times), "d_bwd": deltas(mask[:, ::-1], rev_times),
            "anc": anc}


def clean_fractions(fractions: np.ndarray, tolerance: float = 0.01) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows whose fractions do not sum to 1 are renormalised (count returned); rows that sum to
    0 or hold negative/NaN values are invalid (mask returned)."""
    f = np.asarray(fractions, dtype="float64")
    bad = ~np.isfinite(f).all(axis=1) | (f < 0).any(axis=1)
    sums = np.where(bad, 0, f.sum(axis=1))
    bad |= sums <= 0
    off = (~bad) & (np.abs(sums - 1) > tolerance)
    out = np.where(bad[:, None], 0, f / np.where(sums > 0, sums, 1)[:, None])
    return out.astype("float32"), ~bad, int(off.sum())


def spatial_split(blocks: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a grouped split: whole blocks go to test until ``test_fraction`` of samples."""
    from sklearn.model_selection import GroupShuffleSplit

    if len(np.unique(blocks)) < 2:
        raise InputValidationError("all samples fall in one spatial block: use smaller blocks")
    gss = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    train, test = next(gss.split(np.zeros(len(blocks)), groups=blocks))
    return train, test


def abundance_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """RMSE, MAE and R2 per class and averaged; dominant-class accuracy and macro F1."""
    per_class = {}
    for k, name in enumerate(classes):
        t, p = y_true[:, k], y_pred[:, k]
        ss_res = float(((t - p) ** 2).sum())
        ss_tot = float(((t - t.mean()) ** 2).sum())
        per_class[name] = {"rmse": float(np.sqrt(((t - p) ** 2).mean())), "mae": float(np.abs(t - p).mean()),
                           "r2": float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan")}
    dom_t, dom_p = y_true.argmax(axis=1), y_pred.argmax(axis=1)
    r2s = [v["r2"] for v in per_class.values() if np.isfinite(v["r2"])]
    return {
        "rmse": float(np.sqrt(((y_true - y_pred) ** 2).mean())),
        "mae": float(np.abs(y_true - y_pred).mean()),
        "r2": float(np.mean(r2s)) if r2s else float("nan"),
        "dominant_accuracy": float((dom_t == dom_p).mean()),
        "dominant_macro_f1": float(f1_score(dom_t, dom_p, labels=list(range(len(classes))), average="macro",
                                            zero_division=0)),
        "per_class": per_class,
        "n": int(len(y_true)),
    }


@dataclass
class AbundanceModel:
    """A trained model with everything needed to use it again."""

    network: Any  # BRITSAbundance
    normalisation: Normalisation
    classes: list[str]
    feature_names: list[str]
    ancillary_names: list[str]
    times: list[float] | None
    params: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def predict(self, series: np.ndarray, ancillary: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(N, K) fractions; rows whose series is entirely missing get NaN (nothing to go on)."""
        import torch

        if series.ndim != 3 or series.shape[2] != len(self.feature_names):
            raise ModelError(f"series have shape {series.shape}; the model expects (pixels, steps, "
                             f"{len(self.feature_names)}) with features {', '.join(self.feature_names)}")
        if ancillary.shape[1] != len(self.ancillary_names):
            raise ModelError(f"{ancillary.shape[1]} ancillary variables given; the model expects "
                             f"{', '.join(self.ancillary_names) or 'none'}")
        times = None if self.times is None else np.asarray(self.times, "float32")
        t = prepare_tensors(series, ancillary, self.normalisation, times)
        out = np.full((len(series), len(self.classes)), np.nan, dtype="float32")
        empty = t["m"].sum(axis=(1, 2)) == 0
        self.network.eval()
        with torch.no_grad():
            for start in range(0, len(series), batch_size):
                sl = slice(start, start + batch_size)
                res = self.network(*(torch.from_numpy(np.ascontiguousarray(t[k][sl]))
                                     for k in ("x", "m", "d_fwd", "d_bwd")), torch.from_numpy(t["anc"][sl]))
                out[sl] = res["abundance"].numpy()
        out[empty] = np.nan
        return out

    def impute(self, series: np.ndarray, ancillary: np.ndarray) -> np.ndarray:
        """The series with missing values reconstructed (original units)."""
        import torch

        times = None if self.times is None else np.asarray(self.times, "float32")
        t = prepare_tensors(series, ancillary, self.normalisation, times)
        self.network.eval()
        with torch.no_grad():
            res = self.network(*(torch.from_numpy(np.ascontiguousarray(t[k])) for k in ("x", "m", "d_fwd", "d_bwd")),
                               torch.from_numpy(t["anc"]))
        imp = res["imputed"].numpy()
        return imp * np.asarray(self.normalisation.series_std, "float32") + np.asarray(self.normalisation.series_mean, "float32")


def _seed(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fit_network(network: Any, train_t: dict[str, np.ndarray], y_train: np.ndarray, val_t: dict[str, np.ndarray],
                 y_val: np.ndarray, params: TrainParams, progress: bool) -> list[dict[str, float]]:
    import torch
    from tqdm import tqdm

    opt = torch.optim.Adam(network.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in train_t.items()}
    y = torch.from_numpy(y_train)
    val = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in val_t.items()}
    yv = torch.from_numpy(y_val)
    gen = torch.Generator().manual_seed(params.seed)
    best, best_state, bad_epochs, history = float("inf"), None, 0, []
    bar = tqdm(range(params.epochs), desc="abundance train", unit="epoch", disable=not progress)
    for epoch in bar:
        network.train()
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for start in range(0, len(y), params.batch_size):
            idx = order[start:start + params.batch_size]
            res = network(tensors["x"][idx], tensors["m"][idx], tensors["d_fwd"][idx], tensors["d_bwd"][idx],
                          tensors["anc"][idx])
            loss = (torch.mean((res["abundance"] - y[idx]) ** 2)
                    + params.weight_imputation * res["loss_imputation"]
                    + params.weight_consistency * res["loss_consistency"])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            opt.step()
            total += loss.item() * len(idx)
        network.eval()
        with torch.no_grad():
            pv = network(val["x"], val["m"], val["d_fwd"], val["d_bwd"], val["anc"])["abundance"]
            val_rmse = float(torch.sqrt(torch.mean((pv - yv) ** 2)))
        history.append({"epoch": epoch, "train_loss": total / len(y), "val_rmse": val_rmse})
        bar.set_postfix(val_rmse=f"{val_rmse:.4f}")
        if val_rmse < best - 1e-5:
            best, best_state, bad_epochs = val_rmse, copy.deepcopy(network.state_dict()), 0
        else:
            bad_epochs += 1
            if bad_epochs >= params.patience:
                break
    bar.close()
    if best_state is not None:
        network.load_state_dict(best_state)
    return history


def train_abundance(data: AbundanceData, params: TrainParams | None = None, feature_names: list[str] | None = None,
                    ancillary_names: list[str] | None = None, base: AbundanceModel | None = None,
                    progress: bool = False) -> tuple[AbundanceModel, dict[str, Any]]:
    """Train on a spatial-block 80/20 split (early stopping on a validation set of blocks taken
    from the 80 %); return the model and its test metrics (with the mean-abundance baseline).
    With ``base``, start from its weights (fine-tuning); its head is replaced when the classes
    differ; its normalisation is kept so inputs mean the same thing."""
    import torch

    from landcoverpy.models.brits import BRITSAbundance

    params = params or TrainParams()
    _seed(params.seed)
    if params.threads:
        torch.set_num_threads(params.threads)
    fractions, valid, renormalised = clean_fractions(data.fractions)
    if renormalised:
        log.warning("%d label row(s) did not sum to 1 and were renormalised", renormalised)
    observed = np.isfinite(data.series).any(axis=(1, 2))
    keep = valid & observed
    if (~valid).sum():
        log.warning("%d label row(s) rejected (negative, NaN or all-zero fractions)", int((~valid).sum()))
    if (~observed).sum():
        log.warning("%d pixel(s) skipped: every time-series value is missing", int((~observed).sum()))
    if keep.sum() < 10:
        raise InputValidationError(f"only {int(keep.sum())} usable samples: need at least 10")
    data = AbundanceData(data.series[keep], data.ancillary[keep], fractions[keep], data.blocks[keep],
                         data.classes, data.times)
    train_idx, test_idx = spatial_split(data.blocks, params.test_fraction, params.seed)
    sub_train, sub_val = spatial_split(data.blocks[train_idx], params.validation_fraction, params.seed + 1)
    fit_idx, val_idx = train_idx[sub_train], train_idx[sub_val]
    train_data = data.subset(fit_idx)
    if base is not None:
        norm = base.normalisation
        network = copy.deepcopy(base.network)
        if list(base.classes) != list(data.classes):
            network.replace_head(len(data.classes))
    else:
        norm = Normalisation.fit(train_data)
        network = BRITSAbundance(data.series.shape[2], data.ancillary.shape[1], len(data.classes), params.hidden,
                                 params.ancillary_hidden, params.dropout)
    times = data.times

    def tens(idx: np.ndarray) -> dict[str, np.ndarray]:
        return prepare_tensors(data.series[idx], data.ancillary[idx], norm, times)

    history = _fit_network(network, tens(fit_idx), data.fractions[fit_idx], tens(val_idx), data.fractions[val_idx],
                           params, progress)
    model = AbundanceModel(
        network=network, normalisation=norm, classes=list(data.classes),
        feature_names=feature_names or [f"f{i}" for i in range(data.series.shape[2])],
        ancillary_names=ancillary_names or [f"a{i}" for i in range(data.ancillary.shape[1])],
        times=None if times is None else [float(x) for x in times], params=params.to_dict(), history=history,
    )
    pred = model.predict(data.series[test_idx], data.ancillary[test_idx])
    truth = data.fractions[test_idx]
    baseline = np.tile(data.fractions[train_idx].mean(axis=0), (len(test_idx), 1))
    metrics = {
        "model": abundance_metrics(truth, pred, data.classes),
        "mean_abundance_baseline": abundance_metrics(truth, baseline, data.classes),
        "split": {"scheme": "spatial blocks", "train": int(len(fit_idx)), "validation": int(len(val_idx)),
                  "test": int(len(test_idx)), "blocks": int(len(np.unique(data.blocks)))},
        "epochs": len(history),
        "renormalised_labels": renormalised,
        "dropped_samples": int((~keep).sum()),
    }
    model.metrics = metrics
    log.info("abundance: test RMSE %.4f (mean-abundance baseline %.4f), R2 %.3f, dominant-class accuracy %.3f",
             metrics["model"]["rmse"], metrics["mean_abundance_baseline"]["rmse"], metrics["model"]["r2"],
             metrics["model"]["dominant_accuracy"])
    return model, metrics


def linear_interpolation(series: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
    """Baseline gap filling: per pixel and feature, linear interpolation in time (constant
    extrapolation at the ends)."""
    n, steps, d = series.shape
    t = np.arange(steps, dtype="float64") if times is None else np.asarray(times, "float64")
    out = series.copy()
    for i in range(n):
        for j in range(d):
            y = series[i, :, j]
            ok = np.isfinite(y)
            if ok.sum() == 0:
                continue
            out[i, :, j] = np.interp(t, t[ok], y[ok])
    return out
