"""Classification metrics on label arrays (no IO)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


class ClassScore(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    precision: float
    recall: float
    f1: float
    support: int


class ClassificationScores(BaseModel):
    """What :func:`classification_metrics` computes, typed (read it with :meth:`of`)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    overall_accuracy: float
    kappa: float
    macro_f1: float
    n: int | None = None
    labels: list[str] = []
    per_class: dict[str, ClassScore] = {}
    confusion_matrix: list[list[int]] = []

    @classmethod
    def of(cls, metrics: Mapping[str, Any]) -> ClassificationScores:
        return cls.model_validate(metrics)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[Any]) -> dict[str, Any]:
    """Overall accuracy, Cohen's kappa, macro F1, per-class precision/recall/F1/support and the
    confusion matrix (rows = true class, columns = predicted class, both in ``labels`` order)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    kappa = cohen_kappa_score(y_true, y_pred, labels=labels) if len(set(y_true) | set(y_pred)) > 1 else 0.0
    return {
        "overall_accuracy": float(accuracy_score(y_true, y_pred)),
        "kappa": float(0.0 if np.isnan(kappa) else kappa),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "n": int(len(y_true)),
        "labels": [str(x) for x in labels],
        "per_class": {
            str(lab): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
