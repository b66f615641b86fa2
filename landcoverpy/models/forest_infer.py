"""Class probabilities of a fitted scikit-learn random forest, bit-identical to its
``predict_proba`` on one job, with less work around each tree.

scikit-learn predicts a forest tree by tree: each tree finds every row's leaf (Cython), copies
the leaves' class fractions into a new (rows, classes) array, and adds it to the total under a
lock. Finding the leaves is about two thirds of the time; the rest is the copy, the allocation
and the addition, per tree. Here the leaves come from the same Cython traversal
(``tree_.apply``) and a compiled loop adds each leaf's fractions straight into the total, in the
same order (tree by tree, starting from zeros), then divides by the number of trees as
scikit-learn does: the same floating-point operations in the same order, so the same bits, and
the same class decisions on every pixel. Measured on one core (``benchmarks/classify_throughput.py``):
see docs/benchmarks.md. Estimators this does not cover (LightGBM, multi-output forests) use their own
``predict_proba``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numba
import numpy as np
from sklearn.ensemble._forest import ForestClassifier

ROW_CHUNK = 32768  # rows predicted by every tree at a time (x 66 float32 features: ~8 MiB)


def supported(estimator: Any) -> bool:
    """A fitted single-output scikit-learn forest classifier (random forest, extra trees) set to
    one job, as the classification tasks load them (with more jobs scikit-learn's threads add
    the trees in no fixed order, so its own result is not reproducible to the bit anyway)."""

    return (
        isinstance(estimator, ForestClassifier)
        and hasattr(estimator, "estimators_")
        and getattr(estimator, "n_outputs_", 1) == 1
        and estimator.n_jobs in (None, 1)
    )


@lru_cache(maxsize=1)
def _kernel() -> Any:
    """The numba loop, compiled on first use (cached on disk when the cache dir is writable)."""

    @numba.njit(nogil=True, cache=True, boundscheck=False)
    def accumulate(total: np.ndarray, fractions: np.ndarray, leaves: np.ndarray) -> None:
        k = total.shape[1]
        for i in range(leaves.shape[0]):
            leaf = leaves[i]
            for c in range(k):
                total[i, c] += fractions[leaf, c]

    return accumulate


def forest_proba(estimator: Any, X: np.ndarray) -> np.ndarray:
    """``estimator.predict_proba(X)`` (rows, classes), computed as described above for forests."""
    if not supported(estimator):
        return np.asarray(estimator.predict_proba(X))
    n = len(estimator.estimators_)
    return prefix_proba(estimator, X, [n])[n]


def prefix_proba(forest: Any, X: np.ndarray, counts: list[int]) -> dict[int, np.ndarray]:
    """The probabilities of the forest made of the first ``k`` trees of ``forest`` (which is the
    ``k``-tree forest scikit-learn would fit with the same seed), for each ``k`` in ``counts``,
    from one pass of the trees: the running total, divided by ``k``, at each count."""
    k = int(forest.n_classes_)
    return _prefix_means(forest, X, counts, k, lambda tree: tree.tree_.value[:, 0, :k])


def prefix_regression(forest: Any, X: np.ndarray, counts: list[int]) -> dict[int, np.ndarray]:
    """``predict`` of the first ``k`` trees of a fitted scikit-learn forest regressor, for each
    ``k`` in ``counts``, as (rows, outputs) arrays (one column for a single output), from one pass
    of the trees. The same additions in the same order as scikit-learn's ``predict`` on one job,
    so the full forest's values are its bits."""
    k = int(forest.n_outputs_)
    return _prefix_means(forest, X, counts, k, lambda tree: tree.tree_.value[:, :, 0])


def _prefix_means(forest: Any, X: np.ndarray, counts: list[int], k: int, values: Any) -> dict[int, np.ndarray]:
    """Running sum of each tree's leaf values (``values(tree)``: (nodes, k)), divided by the
    number of trees at each count of ``counts``."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    wanted = sorted(set(counts))
    trees = forest.estimators_[: wanted[-1]]
    leaf_values = [np.ascontiguousarray(values(tree)) for tree in trees]
    out = {t: np.empty((X.shape[0], k), dtype=np.float64) for t in wanted}
    accumulate = _kernel()
    # Rows in chunks, every tree on a chunk before the next: the chunk's features stay in the
    # cache across the trees instead of the whole block being read from memory once per tree
    # (1.45x less CPU on a 1024 x 1024 block, measured with the full-tile benchmark's model).
    # Each row's sum is the same additions in the same order, so the same bits.
    for start in range(0, X.shape[0], ROW_CHUNK):
        rows = X[start : start + ROW_CHUNK]
        total = np.zeros((rows.shape[0], k), dtype=np.float64)
        for t, (tree, fractions) in enumerate(zip(trees, leaf_values), start=1):
            accumulate(total, fractions, tree.tree_.apply(rows))
            if t in out:
                np.divide(total, t, out=out[t][start : start + ROW_CHUNK])
    return out
