"""Hyperparameter search for the category model, with the spatial-block cross-validation the
models are evaluated with (so the chosen parameters are the ones that generalise across space,
not the ones that memorise neighbouring pixels). Arrays and tables in, trials out."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from landcoverpy.assets.params import ModelParams
from landcoverpy.inputs import LabelSet
from landcoverpy.models.hierarchical import train_level

log = logging.getLogger(__name__)

# The search spaces: model size and depth, leaves and learning rate for LightGBM.
SPACES: dict[str, dict[str, list[Any]]] = {
    "random_forest": {"n_estimators": [50, 100, 200], "max_depth": [None, 12, 20], "min_samples_leaf": [1, 3, 5]},
    "lightgbm": {
        "n_estimators": [100, 300],
        "num_leaves": [15, 31, 63],
        "learning_rate": [0.03, 0.1],
        "max_depth": [None, 8],
    },
}


@dataclass
class Trial:
    params: dict[str, Any]
    overall_accuracy: float
    kappa: float
    macro_f1: float
    seconds: float

    def score(self) -> tuple[float, float]:
        return (self.macro_f1, self.kappa)


def candidates(base: ModelParams, trials: int, seed: int) -> list[ModelParams]:
    """``trials`` distinct parameter sets drawn from the model type's space (all of it when it
    is smaller), the base parameters first."""
    space = SPACES[base.model_type]
    grid = [dict(zip(space, combo)) for combo in itertools.product(*space.values())]
    rng = np.random.default_rng(seed)
    picked = [grid[i] for i in rng.permutation(len(grid))[: max(0, trials - 1)]]
    out = [base]
    for values in picked:
        cand = replace(base, **values)
        if cand not in out:
            out.append(cand)
    return out[:trials]


def tune(
    table: pd.DataFrame, features: list[str], lc: LabelSet, base: ModelParams, trials: int = 8, seed: int = 0
) -> tuple[ModelParams, list[Trial]]:
    """Evaluate each candidate on the category level; the best macro F1 (then kappa) wins."""

    results: list[tuple[ModelParams, Trial]] = []
    for i, params in enumerate(candidates(base, trials, seed), start=1):
        started = time.perf_counter()
        model = train_level(table, features, "category", lc, params, "category")
        trial = Trial(
            params=params.identity(),
            overall_accuracy=model.scores.overall_accuracy,
            kappa=model.scores.kappa,
            macro_f1=model.scores.macro_f1,
            seconds=time.perf_counter() - started,
        )
        log.info(
            "trial %d/%d %s: OA %.3f, kappa %.3f, macro F1 %.3f (%.1f s)",
            i,
            trials,
            {k: v for k, v in trial.params.items() if k in SPACES[base.model_type]},
            trial.overall_accuracy,
            trial.kappa,
            trial.macro_f1,
            trial.seconds,
        )
        results.append((params, trial))
    best = max(results, key=lambda pt: pt[1].score())
    return best[0], [t for _, t in results]
