"""Abundance (soft classification) with BRITS: data preparation, training with early stopping on
a spatial-block split, prediction, metrics and fine-tuning. Arrays in, arrays out; storing and
raster IO live in :mod:`landcoverpy.assets.abundance` and :mod:`landcoverpy.raster.series`; the fast
CPU inference path in :mod:`landcoverpy.models.brits_infer`.

Data layout: ``series`` (N, T, D) float with NaN where a value is missing (cloud, QA, gap);
``ancillary`` (N, A); ``fractions`` (N, K) class fractions per pixel; ``blocks`` (N,) spatial
block ids for the split.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from typing import Any, ClassVar

import numba
import numpy as np
from scipy.stats import norm, t
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupShuffleSplit
from tqdm import tqdm

from landcoverpy.errors import InputValidationError, ModelError
from landcoverpy.models import brits_infer
from landcoverpy.models.brits import BRITSAbundance
from landcoverpy.models.brits_infer import pack_series
from landcoverpy.models.device import describe, resolve_device
from landcoverpy.models.forest_infer import prefix_regression
from landcoverpy.models.forest_size import fewest_trees_within, tree_counts

log = logging.getLogger(__name__)


@dataclass
class AbundanceData:
    series: np.ndarray
    ancillary: np.ndarray
    fractions: np.ndarray
    blocks: np.ndarray
    classes: list[str]
    times: np.ndarray | None = None  # time of each step (days); regular steps when None
    # the N2 level, for one model of both levels: (N, K2) fractions (NaN rows: no N2 label there),
    # the N2 class names and the N1 index of each N2 class
    sub_fractions: np.ndarray | None = None
    sub_classes: list[str] | None = None
    parents: list[int] | None = None
    # per-pixel label weights (e.g. the mean confidence of the fine map inside the pixel); None = 1
    weights: np.ndarray | None = None

    def subset(self, idx: np.ndarray) -> AbundanceData:
        return AbundanceData(
            self.series[idx],
            self.ancillary[idx],
            self.fractions[idx],
            self.blocks[idx],
            self.classes,
            self.times,
            None if self.sub_fractions is None else self.sub_fractions[idx],
            self.sub_classes,
            self.parents,
            None if self.weights is None else self.weights[idx],
        )

    @property
    def hierarchical(self) -> bool:
        return self.sub_fractions is not None

    def __len__(self) -> int:
        return len(self.series)


@dataclass
class TrainParams:
    hidden: int = 32  # accuracy and inference time balanced (docs/science/abundance.md)
    ancillary_hidden: int = 16
    dropout: float = 0.1
    epochs: int = 150
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 15
    seed: int = 0
    test_fraction: float = 0.2
    # of the training blocks, for early stopping, sizing the forest and choosing the model: enough
    # blocks for the one-standard-error rule to see a lead
    validation_fraction: float = 0.2
    weight_imputation: float = 0.3
    weight_consistency: float = 0.1
    weight_n2: float = 1.0  # weight of the N2 error against the N1 error (one model of both levels)
    # the network's error on the fractions: cross_entropy (its gradient stays large where a pixel's
    # estimate is far off) or mse; early stopping is on RMSE either way
    loss: str = "cross_entropy"
    model_type: str = "auto"  # brits | forest | ensemble | auto (all on the same split, the best kept)
    trees: int = 300  # forest: number of trees trained (an upper bound: see tree_tolerance)
    # forest: keep the fewest trees (30, 40, ...) whose validation RMSE is within this fraction of
    # the whole forest's (0 keeps every tree); inference time is proportional to the trees kept
    tree_tolerance: float = 0.01
    # forest: minimum samples per leaf; 1 is slightly more accurate but makes trees several times
    # larger and inference slower (docs/science/abundance.md)
    min_leaf: int = 3
    # CPU threads; 0 = one for the network's training (its steps are too small to split, and
    # OpenMP spin-waits on busy cores) and every core for the forest
    threads: int = 0
    device: str = "auto"  # auto | cpu | cuda[:N]

    # fields that decide how fast, never what is learnt (left out of model ids)
    RUNTIME: ClassVar[tuple[str, ...]] = ("threads", "device")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        out = {k: v for k, v in self.to_dict().items() if k not in self.RUNTIME}
        if out["loss"] == "mse":  # absent for mse, what every model trained before the setting used: their ids stay
            del out["loss"]
        return out

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str) -> TrainParams:
        """Settings from a JSON/YAML mapping; an unknown key or a value of the wrong type is an
        error naming ``source`` and the key."""
        known = {f.name: f.type for f in fields(cls)}
        problems = []
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                problems.append(f"unknown setting {key!r} (known: {', '.join(sorted(known))})")
                continue
            default = getattr(cls(), key)
            try:
                if isinstance(default, bool) or isinstance(value, bool):
                    raise TypeError
                out[key] = type(default)(value) if not isinstance(default, str) else str(value)
                if isinstance(default, int) and float(value) != int(value):
                    raise TypeError
            except (TypeError, ValueError):
                problems.append(f"{key}: {value!r} is not a {type(default).__name__}")
        if problems:
            raise InputValidationError(f"{source}: " + "; ".join(problems))
        params = cls(**out)
        params.validate(source)
        return params

    def validate(self, source: str = "training settings") -> None:
        problems = []
        for key in ("hidden", "ancillary_hidden", "epochs", "batch_size", "patience", "trees", "min_leaf"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be at least 1")
        for key in ("test_fraction", "validation_fraction"):
            if not 0 < getattr(self, key) < 1:
                problems.append(f"{key} must be between 0 and 1")
        if not 0 <= self.dropout < 1:
            problems.append("dropout must be in [0, 1)")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be positive")
        if not 0 <= self.tree_tolerance < 1:
            problems.append("tree_tolerance must be in [0, 1) (0.01: within 1 % of the whole forest's RMSE)")
        if self.loss not in LOSSES:
            problems.append(f"loss {self.loss!r}: use {', '.join(LOSSES)}")
        if self.model_type not in MODEL_TYPES:
            problems.append(f"model_type {self.model_type!r}: use {', '.join(MODEL_TYPES)}")
        if problems:
            raise InputValidationError(f"{source}: " + "; ".join(problems))


MODEL_TYPES = ("auto", "brits", "forest", "ensemble")
LOSSES = ("mse", "cross_entropy")
# kinds with a network (BRITS imputes their series, GPU workers serve them) and with a forest
NETWORK_KINDS = ("brits", "ensemble")
FOREST_KINDS = ("forest", "ensemble")


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
            am, as_ = (
                (np.nanmean(data.ancillary, axis=0), np.nanstd(data.ancillary, axis=0))
                if data.ancillary.shape[1]
                else (np.zeros(0), np.zeros(0))
            )

        def fix(a: np.ndarray, d: float) -> np.ndarray:
            return np.asarray(np.where(np.isfinite(a), a, d))

        return cls(
            fix(sm, 0).tolist(),
            np.maximum(fix(ss, 1), 1e-6).tolist(),
            fix(am, 0).tolist(),
            np.maximum(fix(as_, 1), 1e-6).tolist(),
        )

    def apply(self, series: np.ndarray, ancillary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = (series - np.asarray(self.series_mean, "float32")) / np.asarray(self.series_std, "float32")
        a = (
            (ancillary - np.asarray(self.ancillary_mean, "float32")) / np.asarray(self.ancillary_std, "float32")
            if ancillary.shape[1]
            else ancillary
        )
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


def prepare_tensors(
    series: np.ndarray, ancillary: np.ndarray, norm: Normalisation, times: np.ndarray | None
) -> dict[str, np.ndarray]:
    values, anc = norm.apply(series, ancillary)
    mask = np.isfinite(values).astype("float32")
    values = np.nan_to_num(values, nan=0.0)
    rev_times = None if times is None else (times[-1] - times[::-1])
    return {"x": values, "m": mask, "d_fwd": deltas(mask, times), "d_bwd": deltas(mask[:, ::-1], rev_times), "anc": anc}


def time_major_inputs(
    series: np.ndarray,
    ancillary: np.ndarray,
    norm: Normalisation,
    times: np.ndarray | None,
    out: tuple[Any, Any] | None = None,
) -> tuple[Any, Any, np.ndarray]:
    """The inputs of ``prepare_tensors`` in the packed layout of ``models.brits_infer`` (values,
    gaps and mask, both directions side by side, as torch tensors; ``out`` to fill) and the
    normalised ancillaries."""

    values, gaps_mask = pack_series(series, np.asarray(norm.series_mean), np.asarray(norm.series_std), times, out)
    return values, gaps_mask, norm.apply(series[:, :0], ancillary)[1]


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
        per_class[name] = {
            "rmse": float(np.sqrt(((t - p) ** 2).mean())),
            "mae": float(np.abs(t - p).mean()),
            "r2": float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan"),
        }
    dom_t, dom_p = y_true.argmax(axis=1), y_pred.argmax(axis=1)
    r2s = [v["r2"] for v in per_class.values() if np.isfinite(v["r2"])]
    return {
        "rmse": float(np.sqrt(((y_true - y_pred) ** 2).mean())),
        "mae": float(np.abs(y_true - y_pred).mean()),
        "r2": float(np.mean(r2s)) if r2s else float("nan"),
        "dominant_accuracy": float((dom_t == dom_p).mean()),
        "dominant_macro_f1": float(
            f1_score(dom_t, dom_p, labels=list(range(len(classes))), average="macro", zero_division=0)
        ),
        "per_class": per_class,
        "n": int(len(y_true)),
    }


def consistent_fractions(top: np.ndarray, sub: np.ndarray, parents: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Make raw regression outputs abundances: N1 clipped at 0 and scaled to sum to 1; the N2
    classes of each parent scaled to add up to that parent's N1 fraction (equal shares when the
    regression gave them all 0)."""
    top = np.clip(top, 0, None)
    total = top.sum(axis=1, keepdims=True)
    top = np.where(total > 0, top / np.where(total > 0, total, 1), 1.0 / top.shape[1])
    sub = np.clip(sub, 0, None)
    out = np.zeros_like(sub)
    par = np.asarray(parents)
    for p in np.unique(par):
        cols = np.nonzero(par == p)[0]
        s = sub[:, cols].sum(axis=1, keepdims=True)
        share = np.where(s > 0, sub[:, cols] / np.where(s > 0, s, 1), 1.0 / len(cols))
        out[:, cols] = share * top[:, [p]]
    return top.astype("float32"), out.astype("float32")


def consistency_error(top: np.ndarray, sub: np.ndarray, parents: list[int]) -> float:
    """Largest |sum of a parent's N2 fractions - its N1 fraction| over pixels and parents."""
    par = np.asarray(parents)
    ok = np.isfinite(top).all(axis=1) & np.isfinite(sub).all(axis=1)
    if not ok.any():
        return 0.0
    errs = [np.abs(sub[ok][:, par == p].sum(axis=1) - top[ok][:, p]).max() for p in np.unique(par)]
    return float(max(errs))


@dataclass
class AbundanceModel:
    """A trained model (``kind`` brits, forest, or ensemble: the mean of a BRITS network's and a
    forest's fractions) with everything needed to use it again. With
    ``sub_classes`` it estimates both levels: ``predict`` returns the N1 columns then the N2
    columns, the N2 fractions of each parent adding up to its N1 fraction."""

    network: Any  # BRITSAbundance, or None for a forest
    normalisation: Normalisation
    classes: list[str]
    feature_names: list[str]
    ancillary_names: list[str]
    times: list[float] | None
    params: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    sub_classes: list[str] | None = None
    parents: list[int] | None = None
    kind: str = "brits"
    forest: Any = None  # sklearn regressor (kinds forest and ensemble)
    step: str | None = None  # the series' step name (timesteps), recorded with the model

    @property
    def all_classes(self) -> list[str]:
        return list(self.classes) + list(self.sub_classes or [])

    def level_columns(self, level: str) -> slice:
        """Columns of ``predict`` for a level: N1 then N2 for a model of both levels."""
        if self.sub_classes is None:
            return slice(0, len(self.classes))
        return slice(0, len(self.classes)) if level == "N1" else slice(len(self.classes), len(self.all_classes))

    def level_classes(self, level: str) -> list[str]:
        return self.all_classes[self.level_columns(level)]

    def _check(self, series: np.ndarray, ancillary: np.ndarray) -> None:
        if series.ndim != 3 or series.shape[2] != len(self.feature_names):
            raise ModelError(
                f"series have shape {series.shape}; the model expects (pixels, steps, "
                f"{len(self.feature_names)}) with features {', '.join(self.feature_names)}"
            )
        if self.times is not None and series.shape[1] != len(self.times):
            raise ModelError(
                f"series have {series.shape[1]} time steps; the model was trained on {len(self.times)} "
                f"({self.step or 'steps'}): build the series with the model's steps"
            )
        if ancillary.shape[1] != len(self.ancillary_names):
            raise ModelError(
                f"{ancillary.shape[1]} ancillary variables given; the model expects "
                f"{', '.join(self.ancillary_names) or 'none'}"
            )

    def predict(
        self, series: np.ndarray, ancillary: np.ndarray, batch_size: int | None = None, device: str | None = None
    ) -> np.ndarray:
        """(N, K) fractions (N1 then N2 columns for a model of both levels); rows whose series is
        entirely missing get NaN (nothing to go on) and are not computed (sea, nodata borders)."""
        self._check(series, ancillary)
        full = np.isfinite(series).any(axis=(1, 2))
        out = np.full((len(series), len(self.all_classes)), np.nan, dtype="float32")
        if not full.any():
            return out
        all_full = full.all()
        rows, anc = (series, ancillary) if all_full else (series[full], ancillary[full])
        if self.kind == "forest":
            got = self._predict_forest(rows, anc)
        elif self.kind == "brits":
            got = self._predict_brits(rows, anc, batch_size, device)
        else:  # the mean of two consistent estimates is consistent (sums within a parent are linear)
            got = self._predict_brits(rows, anc, batch_size, device)
            got += self._predict_forest(rows, anc)
            got *= 0.5
        if all_full:
            return got.astype("float32", copy=False)
        out[full] = got
        return out

    def _predict_forest(self, series: np.ndarray, ancillary: np.ndarray) -> np.ndarray:
        return self._forest_fractions(self.forest.predict(self.forest_inputs(series, ancillary)))

    def forest_inputs(self, series: np.ndarray, ancillary: np.ndarray) -> np.ndarray:
        times = None if self.times is None else np.asarray(self.times, "float32")
        return forest_features(series, ancillary, times, self.params["forest_fill"])

    def _forest_fractions(self, raw: np.ndarray) -> np.ndarray:
        """The forest's raw regression outputs made consistent fractions (each level sums to 1,
        N2 inside its parent's N1)."""
        raw = raw.reshape(len(raw), -1)
        k1 = len(self.classes)
        if self.sub_classes is None:
            return consistent_fractions(raw, raw[:, :0], [])[0]
        top, sub = consistent_fractions(raw[:, :k1], raw[:, k1:], self.parents or [])
        return np.concatenate([top, sub], axis=1)

    def _predict_brits(
        self, series: np.ndarray, ancillary: np.ndarray, batch_size: int | None, device: str | None
    ) -> np.ndarray:
        out = np.full((len(series), len(self.all_classes)), np.nan, dtype="float32")

        def keep(sl: slice, res: dict[str, Any]) -> None:
            parts = [res["abundance"]] + ([res["sub_abundance"]] if "sub_abundance" in res else [])
            out[sl] = torch_cat_numpy(parts)

        self._run_brits(series, ancillary, batch_size, device, False, keep)
        return out

    def _run_brits(
        self,
        series: np.ndarray,
        ancillary: np.ndarray,
        batch_size: int | None,
        device: str | None,
        imputed: bool,
        consume: Callable[[slice, dict[str, Any]], None],
    ) -> None:
        """The network's eval outputs batch by batch, handed to ``consume`` (disjoint row slices).

        On a CPU the fast path of ``models.brits_infer`` (same function, over twice the
        throughput) in batches of 2048 pixels (a step's buffers stay in cache). With several torch
        threads, the rows are shared between that many Python threads running torch on one thread
        each (its operations release the GIL): a step's operations are too small to split well
        inside torch. On a GPU: the network itself in large batches with mixed precision."""
        import torch

        dev = resolve_device(device or self.params.get("device", "auto"))
        times = None if self.times is None else np.asarray(self.times, "float32")
        network = self.network.to(dev).eval()
        if dev.type != "cpu":
            batch = batch_size or 65536
            with torch.inference_mode():
                for start in range(0, len(series), batch):
                    sl = slice(start, start + batch)
                    t = prepare_tensors(series[sl], ancillary[sl], self.normalisation, times)
                    with torch.autocast(dev.type, dtype=torch.float16, enabled=not imputed):
                        res = network(
                            *(
                                torch.from_numpy(np.ascontiguousarray(t[k])).to(dev, non_blocking=True)
                                for k in ("x", "m", "d_fwd", "d_bwd")
                            ),
                            torch.from_numpy(t["anc"]).to(dev),
                        )
                    consume(sl, res)
            return
        batch = batch_size or 2048

        def share(rows: range) -> None:
            buffers = None
            with torch.inference_mode():
                for start in rows:
                    sl = slice(start, min(start + batch, len(series)))
                    values, gaps_mask, anc = time_major_inputs(
                        series[sl], ancillary[sl], self.normalisation, times, buffers
                    )
                    buffers = values, gaps_mask
                    consume(sl, brits_infer.run(network, values, gaps_mask, torch.from_numpy(anc), imputed=imputed))

        starts = range(0, len(series), batch)
        torch_threads = torch.get_num_threads()
        threads = min(torch_threads, len(starts))
        if threads <= 1:
            share(starts)
            return

        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(share, [starts[k::threads] for k in range(threads)]))
        finally:
            torch.set_num_threads(torch_threads)

    def impute(self, series: np.ndarray, ancillary: np.ndarray, device: str | None = None) -> np.ndarray:
        """The series with missing values reconstructed (original units): BRITS's estimates, or
        linear interpolation in time for a forest model."""
        times = None if self.times is None else np.asarray(self.times, "float32")
        if self.kind not in NETWORK_KINDS:
            return linear_interpolation(series, times)
        out = np.empty(series.shape, dtype="float32")

        def keep(sl: slice, res: dict[str, Any]) -> None:
            out[sl] = res["imputed"].float().cpu().numpy()

        self._run_brits(series, ancillary, None, device, True, keep)
        std = np.asarray(self.normalisation.series_std, "float32")
        mean = np.asarray(self.normalisation.series_mean, "float32")
        restored: np.ndarray = out * std + mean
        return restored


def torch_cat_numpy(parts: list[Any]) -> np.ndarray:
    """Concatenate torch tensors along columns into a float32 numpy array (on the host)."""
    import torch

    return torch.cat(parts, dim=1).float().cpu().numpy()


def _seed(seed: int) -> None:

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fit_network(
    network: Any,
    train_t: dict[str, np.ndarray],
    y_train: np.ndarray,
    val_t: dict[str, np.ndarray],
    y_val: np.ndarray,
    params: TrainParams,
    progress: bool,
    k1: int,
    device: Any,
    w_train: np.ndarray | None = None,
    w_val: np.ndarray | None = None,
) -> list[dict[str, float]]:
    """Adam with early stopping on the validation RMSE. ``y`` holds the N1 columns then (for a
    model of both levels) the N2 columns, NaN where a pixel has no N2 label."""
    import torch

    opt = torch.optim.Adam(network.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in train_t.items()}
    y = torch.from_numpy(y_train).to(device)
    val = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in val_t.items()}
    yv = torch.from_numpy(y_val).to(device)
    w = torch.from_numpy(np.ones(len(y_train), "float32") if w_train is None else w_train.astype("float32")).to(device)
    wv = torch.from_numpy(np.ones(len(y_val), "float32") if w_val is None else w_val.astype("float32")).to(device)
    hierarchical = y.shape[1] > k1

    def error(res: dict[str, torch.Tensor], target: torch.Tensor, w: torch.Tensor, loss: str = "mse") -> torch.Tensor:
        """Mean squared error per pixel (``loss`` "mse"), or the cross-entropy of the estimated
        fractions against the label fractions ("cross_entropy"), averaged with the pixels' label
        weights."""

        def per_pixel(pred: torch.Tensor, t: torch.Tensor, ok: torch.Tensor | None = None) -> torch.Tensor:
            """Each pixel's error over its labelled classes (``ok``; None: every class)."""
            if ok is not None:
                t = torch.nan_to_num(t)
            each = -(t * torch.log(pred.clamp(min=1e-6))) if loss == "cross_entropy" else (pred - t) ** 2
            if ok is not None:
                each = torch.where(ok, each, torch.zeros_like(each))
            if loss == "cross_entropy":
                return each.sum(dim=1)
            return each.sum(dim=1) / (each.shape[1] if ok is None else ok.sum(dim=1).clamp(min=1))

        err = (w * per_pixel(res["abundance"], target[:, :k1])).sum() / w.sum().clamp(min=1e-6)
        if hierarchical:
            t2 = target[:, k1:]
            ok = torch.isfinite(t2)
            w2 = w * ok.any(dim=1)
            err = err + params.weight_n2 * (w2 * per_pixel(res["sub_abundance"], t2, ok)).sum() / w2.sum().clamp(
                min=1e-6
            )
        return err

    gen = torch.Generator().manual_seed(params.seed)
    best, best_state, bad_epochs, history = float("inf"), None, 0, []
    bar = tqdm(range(params.epochs), desc="abundance train", unit="epoch", disable=not progress)
    for epoch in bar:
        network.train()
        order = torch.randperm(len(y), generator=gen).to(device)
        total = 0.0
        for start in range(0, len(y), params.batch_size):
            idx = order[start : start + params.batch_size]
            res = network(
                tensors["x"][idx], tensors["m"][idx], tensors["d_fwd"][idx], tensors["d_bwd"][idx], tensors["anc"][idx]
            )
            loss = (
                error(res, y[idx], w[idx], params.loss)
                + params.weight_imputation * res["loss_imputation"]
                + params.weight_consistency * res["loss_consistency"]
            )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            opt.step()
            total += loss.item() * len(idx)
        network.eval()
        with torch.no_grad():
            val_rmse = float(
                torch.sqrt(error(network(val["x"], val["m"], val["d_fwd"], val["d_bwd"], val["anc"]), yv, wv))
            )
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


def forest_features(
    series: np.ndarray, ancillary: np.ndarray, times: np.ndarray | None, fill: list[float] | None = None
) -> np.ndarray:
    """The forest's inputs: the series gap-filled by linear interpolation in time, flattened,
    then the ancillary variables; values still missing (a band never observed) take ``fill``."""
    n, steps, d = series.shape
    x = np.empty((n, steps * d + ancillary.shape[1]), dtype="float32")
    linear_interpolation(series, times, out=np.reshape(x[:, : steps * d], (n, steps, d), copy=False))  # in place
    x[:, steps * d :] = ancillary
    if fill is not None:
        np.copyto(x, np.broadcast_to(np.asarray(fill, "float32"), x.shape), where=~np.isfinite(x))
    return x


def _pixel_errors(data: AbundanceData, pred: np.ndarray) -> np.ndarray:
    """Squared error of each pixel (mean over classes; N1 plus N2 for a model of both levels)."""
    k1 = len(data.classes)
    err = np.mean((pred[:, :k1] - data.fractions) ** 2, axis=1)
    if data.sub_fractions is not None:
        with np.errstate(invalid="ignore"):
            err = err + np.nan_to_num(np.nanmean((pred[:, k1:] - data.sub_fractions) ** 2, axis=1))
    return np.asarray(np.nan_to_num(err, nan=0.0))


MIN_VALIDATION_PIXELS = 30  # below this, a neural model's validation lead is not evidence


# candidates from the steadiest to the most variable: each must beat the one kept before it
ROBUSTNESS_ORDER = ("forest", "ensemble", "brits")


@lru_cache(maxsize=64)
def one_se_factor(n: int) -> float:
    """Student's t quantile for ``n`` paired differences at the one-sided level of one normal
    standard error (Phi(1) = 0.8413): the factor that keeps the one-standard-error rule's
    confidence when the standard error comes from few samples."""

    return float(t.ppf(norm.cdf(1.0), n - 1))


def choose_model(val_errors: dict[str, np.ndarray], blocks: np.ndarray | None = None) -> str:
    """The model kind to keep from the validation pixels' errors. The forest (the cheaper,
    steadier model) is kept first; then each challenger in :data:`ROBUSTNESS_ORDER` (the
    ensemble of BRITS and the forest, then BRITS alone) replaces the kept model only when it beats
    it by more than one standard error of their paired difference (the one-standard-error rule:
    with few validation blocks a small lead is noise). With ``blocks`` (each pixel's spatial
    block), the standard error is that of the blocks' mean differences: errors of neighbouring
    pixels go together, so pixels are not independent evidence (one block cannot show a lead).
    The standard error of a few differences is itself a rough estimate, so it is scaled by
    Student's t at the rule's one-sided level (84 %) for their count (1.84 for two blocks, 1.11
    for six, ~1 for many): without it, two validation blocks that both lean one way, however
    unequally, counted as a lead beyond one standard error. Nothing replaces the forest on fewer
    than MIN_VALIDATION_PIXELS validation pixels. A single candidate is kept as it is."""
    if len(val_errors) == 1:
        return next(iter(val_errors))
    if len(val_errors["forest"]) < MIN_VALIDATION_PIXELS:
        log.info(
            "abundance: %d validation pixels are too few to trust a lead over the forest (%d needed): "
            "the forest is kept",
            len(val_errors["forest"]),
            MIN_VALIDATION_PIXELS,
        )
        return "forest"
    kept = "forest"
    for challenger in ROBUSTNESS_ORDER[1:]:
        if challenger not in val_errors:
            continue
        diff = val_errors[challenger] - val_errors[kept]
        if blocks is not None:
            diff = np.array([diff[blocks == b].mean() for b in np.unique(blocks)])
        if len(diff) < 2:
            continue
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) * one_se_factor(len(diff))
        if float(diff.mean()) + se < 0:
            kept = challenger
    return kept


def _targets(data: AbundanceData) -> np.ndarray:
    if data.sub_fractions is None:
        return data.fractions
    return np.concatenate([data.fractions, data.sub_fractions], axis=1).astype("float32")


def _level_metrics(data: AbundanceData, pred: np.ndarray) -> dict[str, Any]:
    k1 = len(data.classes)
    out = {"N1": abundance_metrics(data.fractions, pred[:, :k1], data.classes)}
    if data.sub_fractions is not None:
        ok = np.isfinite(data.sub_fractions).all(axis=1)
        out["N2"] = abundance_metrics(data.sub_fractions[ok], pred[ok, k1:], data.sub_classes or [])
    return out


def _train_brits(
    data: AbundanceData,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    params: TrainParams,
    base: AbundanceModel | None,
    progress: bool,
) -> tuple[Any, Normalisation, list[dict[str, float]]]:

    device = resolve_device(params.device)
    if base is not None and base.kind in NETWORK_KINDS:
        norm = base.normalisation
        network = copy.deepcopy(base.network)
        if (
            list(base.classes) != list(data.classes)
            or (base.sub_classes or None) != (data.sub_classes or None)
            or (base.parents or None) != (data.parents or None)
        ):
            network.replace_head(len(data.classes), data.parents)
    else:
        norm = Normalisation.fit(data.subset(fit_idx))
        network = BRITSAbundance(
            data.series.shape[2],
            data.ancillary.shape[1],
            len(data.classes),
            params.hidden,
            params.ancillary_hidden,
            params.dropout,
            data.parents,
        )
    network = network.to(device)
    times = data.times

    def tens(idx: np.ndarray) -> dict[str, np.ndarray]:
        return prepare_tensors(data.series[idx], data.ancillary[idx], norm, times)

    targets = _targets(data)
    log.info("abundance: training BRITS on %s", describe(device))
    weights = data.weights
    history = _fit_network(
        network,
        tens(fit_idx),
        targets[fit_idx],
        tens(val_idx),
        targets[val_idx],
        params,
        progress,
        len(data.classes),
        device,
        None if weights is None else weights[fit_idx],
        None if weights is None else weights[val_idx],
    )
    return network.cpu(), norm, history


def size_forest(
    model: AbundanceModel, val: AbundanceData, tolerance: float, partner: np.ndarray | None = None
) -> dict[str, dict[str, Any]]:
    """The fewest of ``model``'s forest's trees (trained without the validation blocks) whose
    validation RMSE (consistent fractions, both levels) is within ``tolerance`` of the whole
    forest's: the first k trees of a forest are the k-tree forest its seed would fit, so one pass
    of the trees over the validation pixels scores every size. Inference time is proportional to
    the trees kept. Returned under "forest"; with ``partner`` (BRITS's validation fractions) also
    under "ensemble", the sizes scored from the same pass as the ensemble uses the forest,
    averaged with the partner: BRITS's share of the estimate makes the forest's own variance
    matter less, so an ensemble usually needs fewer trees than the forest alone. Every tree is
    kept on fewer than MIN_VALIDATION_PIXELS validation pixels or with ``tolerance`` 0. Each
    entry has the sizes scored and the one to keep (see :func:`cut_forest`); the forest itself is
    left whole."""

    trained = len(model.forest.estimators_)
    partners = {"forest": None} | ({} if partner is None else {"ensemble": partner})
    if tolerance <= 0 or len(val) < MIN_VALIDATION_PIXELS:
        if tolerance > 0:
            log.info(
                "abundance forest: %d validation pixels are too few to size it (%d needed): all %d trees kept",
                len(val),
                MIN_VALIDATION_PIXELS,
                trained,
            )
        return {
            kind: {"trees": trained, "of": trained, "tolerance": tolerance, "validation_rmse": {}} for kind in partners
        }
    fractions = {
        k: model._forest_fractions(v)
        for k, v in prefix_regression(
            model.forest, model.forest_inputs(val.series, val.ancillary), tree_counts(trained)
        ).items()
    }
    out = {}
    for kind, other in partners.items():
        errors = {
            k: float(np.sqrt(np.mean(_pixel_errors(val, f if other is None else (other + f) * 0.5))))
            for k, f in fractions.items()
        }
        kept = fewest_trees_within(errors, tolerance)
        log.info(
            "abundance %s: %d of %d trees kept (validation RMSE %.4f vs %.4f with all)",
            "forest" if other is None else "ensemble's forest",
            kept,
            trained,
            errors[kept],
            errors[trained],
        )
        out[kind] = {
            "trees": kept,
            "of": trained,
            "tolerance": tolerance,
            "validation_rmse": {str(k): round(v, 5) for k, v in errors.items()},
        }
    return out


def cut_forest(forest: Any, trees: int) -> Any:
    """The first ``trees`` trees of a fitted forest as a forest of their own (a shallow copy: the
    trees are shared), which is the forest of that size its seed would fit."""
    if trees >= len(forest.estimators_):
        return forest
    cut = copy.copy(forest)
    cut.estimators_ = forest.estimators_[:trees]
    cut.n_estimators = trees
    return cut


def _train_forest(data: AbundanceData, train_idx: np.ndarray, params: TrainParams) -> tuple[Any, list[float]]:

    times = data.times
    x = forest_features(data.series[train_idx], data.ancillary[train_idx], times)
    with np.errstate(all="ignore"):
        fill = np.nanmean(x, axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isfinite(x), x, fill)
    y = _targets(data)[train_idx]
    y = np.where(np.isfinite(y), y, 0.0)  # no N2 label: trained towards 0, rescaled inside its parent
    forest = RandomForestRegressor(
        n_estimators=params.trees,
        min_samples_leaf=params.min_leaf,
        max_features=0.3,
        n_jobs=params.threads or -1,
        random_state=params.seed,
    )
    forest.fit(x, y, sample_weight=None if data.weights is None else data.weights[train_idx])
    return forest, fill.astype("float32").tolist()


def train_abundance(
    data: AbundanceData,
    params: TrainParams | None = None,
    feature_names: list[str] | None = None,
    ancillary_names: list[str] | None = None,
    base: AbundanceModel | None = None,
    progress: bool = False,
    step: str | None = None,
) -> tuple[AbundanceModel, dict[str, Any]]:
    """:func:`_train_abundance`, with torch's thread count (``params.threads``) set for the
    training only and restored after, so a long-lived process (a Dask worker) keeps its own."""
    import torch

    before = torch.get_num_threads()
    try:
        return _train_abundance(data, params, feature_names, ancillary_names, base, progress, step)
    finally:
        torch.set_num_threads(before)


def _train_abundance(
    data: AbundanceData,
    params: TrainParams | None = None,
    feature_names: list[str] | None = None,
    ancillary_names: list[str] | None = None,
    base: AbundanceModel | None = None,
    progress: bool = False,
    step: str | None = None,
) -> tuple[AbundanceModel, dict[str, Any]]:
    """Train on a spatial-block 80/20 split (early stopping on a validation set of blocks taken
    from the 80 %); return the model and its test metrics (with the mean-abundance baseline).
    ``model_type`` auto trains BRITS and the forest on the same split, forms their ensemble (the
    mean of both), and keeps the best on the validation blocks (:func:`choose_model`; every
    candidate reported on the test blocks). With ``base``, start from its weights (fine-tuning); its
    heads are replaced when the classes differ; its normalisation is kept so inputs mean the same
    thing. With ``data.sub_fractions``, one model estimates both levels consistently."""
    import torch

    params = params or TrainParams()
    params.validate()
    _seed(params.seed)
    torch.set_num_threads(params.threads or 1)
    fractions, valid, renormalised = clean_fractions(data.fractions)
    if renormalised:
        log.warning("%d label row(s) did not sum to 1 and were renormalised", renormalised)
    sub = None
    if data.sub_fractions is not None:
        sub, sub_valid, sub_renorm = clean_fractions(data.sub_fractions)
        sub = np.where(sub_valid[:, None], sub, np.nan).astype("float32")
        if sub_renorm:
            log.warning("%d N2 label row(s) did not sum to 1 and were renormalised", sub_renorm)
    observed = np.isfinite(data.series).any(axis=(1, 2))
    keep = valid & observed
    if (~valid).sum():
        log.warning("%d label row(s) rejected (negative, NaN or all-zero fractions)", int((~valid).sum()))
    if (~observed).sum():
        log.warning("%d pixel(s) skipped: every time-series value is missing", int((~observed).sum()))
    if keep.sum() < 10:
        raise InputValidationError(f"only {int(keep.sum())} usable samples: need at least 10")
    data = AbundanceData(
        data.series[keep],
        data.ancillary[keep],
        fractions[keep],
        data.blocks[keep],
        data.classes,
        data.times,
        None if sub is None else sub[keep],
        data.sub_classes,
        data.parents,
        None if data.weights is None else data.weights[keep],
    )
    train_idx, test_idx = spatial_split(data.blocks, params.test_fraction, params.seed)
    sub_train, sub_val = spatial_split(data.blocks[train_idx], params.validation_fraction, params.seed + 1)
    fit_idx, val_idx = train_idx[sub_train], train_idx[sub_val]
    common: dict[str, Any] = dict(
        classes=list(data.classes),
        sub_classes=data.sub_classes,
        parents=data.parents,
        feature_names=feature_names or [f"f{i}" for i in range(data.series.shape[2])],
        ancillary_names=ancillary_names or [f"a{i}" for i in range(data.ancillary.shape[1])],
        times=[float(x) for x in (np.arange(data.series.shape[1]) if data.times is None else data.times)],
        step=step,
    )
    wanted = ["brits", "forest", "ensemble"] if params.model_type == "auto" else [params.model_type]
    if base is not None:
        wanted = [base.kind]  # fine-tuning continues the base model's kind
    trained = [k for k in ("brits", "forest") if k in wanted or "ensemble" in wanted]  # the ensemble's members
    test, val = data.subset(test_idx), data.subset(val_idx)
    candidates: dict[str, tuple[AbundanceModel, dict[str, Any]]] = {}
    chosen_by: dict[str, float] = {}
    val_errors: dict[str, np.ndarray] = {}
    val_preds: dict[str, np.ndarray] = {}
    test_preds: dict[str, np.ndarray] = {}
    members: dict[str, AbundanceModel] = {}
    sizes: dict[str, dict[str, Any]] = {}  # trees kept by the forest and by the ensemble
    if "brits" in trained:
        network, norm, history = _train_brits(data, fit_idx, val_idx, params, base, progress)
        members["brits"] = AbundanceModel(
            network=network, normalisation=norm, params=params.to_dict(), history=history, kind="brits", **common
        )
        val_preds["brits"] = members["brits"].predict(val.series, val.ancillary)
        test_preds["brits"] = members["brits"].predict(test.series, test.ancillary)
    if "forest" in trained:
        forest, fill = _train_forest(data, fit_idx, params)  # the validation blocks stay out to choose
        model = AbundanceModel(
            network=None,
            normalisation=Normalisation.fit(data.subset(fit_idx)),
            params=params.to_dict() | {"forest_fill": fill},
            kind="forest",
            forest=forest,
            **common,
        )
        sizes = size_forest(
            model, val, params.tree_tolerance, partner=val_preds["brits"] if "ensemble" in wanted else None
        )

        def with_brits(kind: str, got: np.ndarray, preds: dict[str, np.ndarray]) -> np.ndarray:
            return got if kind == "forest" else (preds["brits"] + got) * 0.5  # the ensemble's mean

        for kind, size in sizes.items():  # chosen on the fit blocks' forest, cut to each size
            got = replace(model, forest=cut_forest(forest, size["trees"])).predict(val.series, val.ancillary)
            val_preds[kind] = with_brits(kind, got, val_preds)
        # refit on every training block (no early stopping) with as many trees as the larger size needs
        forest, fill = _train_forest(data, train_idx, replace(params, trees=max(s["trees"] for s in sizes.values())))
        for kind, size in sizes.items():
            kept = size["trees"]
            alone = replace(
                model,
                forest=cut_forest(forest, kept),
                params=params.to_dict() | {"forest_fill": fill, "forest_trees": kept},
            )
            test_preds[kind] = with_brits(kind, alone.predict(test.series, test.ancillary), test_preds)
            brits = members.get("brits")
            assert brits is not None or kind == "forest", "the ensemble needs its BRITS member"
            members[kind] = (
                alone
                if kind == "forest" or brits is None
                else replace(  # BRITS's test fractions are not computed again
                    alone,
                    kind="ensemble",
                    network=brits.network,
                    normalisation=brits.normalisation,
                    history=brits.history,
                )
            )
    for kind in members:  # an ensemble's members are reported beside it
        val_metrics = _level_metrics(val, val_preds[kind])
        chosen_by[kind] = sum(v["rmse"] for v in val_metrics.values())
        val_errors[kind] = _pixel_errors(val, val_preds[kind])
        candidates[kind] = (members[kind], _level_metrics(test, test_preds[kind]))
    # chosen on the validation blocks (never on the test blocks it is then scored on)
    chosen = choose_model(val_errors, val.blocks) if len(wanted) > 1 else wanted[0]
    model, levels = candidates[chosen]
    baseline_pred = np.tile(np.nan_to_num(np.nanmean(_targets(data)[train_idx], axis=0)), (len(test_idx), 1))
    baseline = _level_metrics(test, baseline_pred)
    pred = test_preds[chosen]
    metrics = {
        "model": levels["N1"],
        "mean_abundance_baseline": baseline["N1"],
        "levels": levels,
        "baseline_levels": baseline,
        "model_type": chosen,
        "candidates": {
            k: {lv: {m: v[lv][m] for m in ("rmse", "mae", "r2", "dominant_accuracy")} for lv in v}
            | {"validation_rmse": chosen_by[k]}
            for k, (_, v) in candidates.items()
        },
        "split": {
            "scheme": "spatial blocks",
            "train": int(len(fit_idx)),
            "validation": int(len(val_idx)),
            "test": int(len(test_idx)),
            "blocks": int(len(np.unique(data.blocks))),
        },
        "epochs": len(model.history),
        "renormalised_labels": renormalised,
        "dropped_samples": int((~keep).sum()),
    }
    if "forest" in sizes:
        metrics["forest_size"] = sizes["forest"]
    if "ensemble" in sizes:
        metrics["ensemble_forest_size"] = sizes["ensemble"]
    if data.sub_classes is not None:
        metrics["consistency_error"] = consistency_error(
            pred[:, : len(data.classes)], pred[:, len(data.classes) :], data.parents or []
        )
    model.metrics = metrics
    for kind, (_, lv) in candidates.items():
        log.info(
            "abundance %s: test RMSE %s (mean-abundance baseline %s)",
            kind,
            ", ".join(f"{k} {v['rmse']:.4f}" for k, v in lv.items()),
            ", ".join(f"{k} {v['rmse']:.4f}" for k, v in baseline.items()),
        )
    log.info("abundance: kept the %s model", chosen)
    return model, metrics


def linear_interpolation(
    series: np.ndarray, times: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Baseline gap filling: per pixel and feature, linear interpolation in time (constant
    extrapolation at the ends; NaN where a pixel's feature was never observed; NaN and inf are
    gaps). One compiled pass over each pixel's steps, no temporaries (the vectorised numpy form
    needed ~7 GB for a 512 x 512 block at 46 steps x 7 bands, and ran 20x slower). ``out``: a
    (pixels, steps, features) float32 array, or view, to write into."""
    x = np.asarray(series, dtype="float32")
    t = np.arange(x.shape[1], dtype="float64") if times is None else np.asarray(times, "float64")
    if out is None:
        out = np.empty(x.shape, dtype="float32")
    if out.shape != x.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {x.shape}, got {out.dtype} {out.shape}")
    if x.size:
        _interpolation_kernel()(x, t, out)
    return out


@lru_cache(maxsize=1)
def _interpolation_kernel() -> Callable[..., None]:
    """Compiled on first use (cached on disk when numba's cache dir is writable). The arithmetic
    is the vectorised form's: the float32 difference scaled by a float64 weight, rounded once."""

    @numba.njit(nogil=True, cache=True, boundscheck=False)
    def interpolate(x: np.ndarray, t: np.ndarray, out: np.ndarray) -> None:
        n, steps, d = x.shape
        for i in range(n):
            for b in range(d):
                prev = -1
                for s in range(steps):
                    v = x[i, s, b]
                    if not np.isfinite(v):
                        continue
                    if prev < 0:  # steps before the first observation take its value
                        for r in range(s):
                            out[i, r, b] = v
                    else:
                        vp = x[i, prev, b]
                        diff = np.float32(v - vp)
                        span = t[s] - t[prev]
                        for r in range(prev + 1, s):
                            w = (t[r] - t[prev]) / span if span > 0 else 0.0
                            out[i, r, b] = np.float32(np.float64(vp) + w * np.float64(diff))
                    out[i, s, b] = v
                    prev = s
                if prev < 0:  # never observed
                    for r in range(steps):
                        out[i, r, b] = np.nan
                else:  # after the last observation, its value
                    vp = x[i, prev, b]
                    for r in range(prev + 1, steps):
                        out[i, r, b] = vp

    return interpolate
