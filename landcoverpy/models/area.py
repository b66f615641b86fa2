"""Area estimation and accuracy assessment with a stratified random sample (Olofsson et al.
2014, "Good practices for estimating area and assessing accuracy of land change", Remote
Sensing of Environment 148: 42-57), on arrays.

The strata are the map classes: ``counts[i, j]`` reference samples of class j among the samples
drawn in map class i, ``map_pixels[i]`` the map's pixels of class i. Estimators (equations 2-10
of the paper): error matrix in area proportions, user's, producer's and overall accuracy, and
the area of each class with its standard error and 95 % confidence interval.

Sample design (section 5.1.1 of the paper): the sample size for a target standard error of
overall accuracy, allocated with a minimum per stratum and the rest proportionally to area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.96


@dataclass
class AreaAccuracy:
    classes: list[str]
    proportions: np.ndarray  # (k, k) error matrix in area proportions, map rows x reference columns
    overall: float
    overall_ci: float  # half-width of the 95 % confidence interval
    users: np.ndarray
    users_ci: np.ndarray
    producers: np.ndarray
    producers_ci: np.ndarray
    area: np.ndarray  # estimated area of each reference class (map units, e.g. km2)
    area_se: np.ndarray
    area_ci: np.ndarray
    mapped_area: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        def r(x: float) -> float | None:
            return None if not np.isfinite(x) else round(float(x), 6)

        return {
            "overall_accuracy": r(self.overall),
            "overall_accuracy_ci95": r(self.overall_ci),
            "error_matrix_proportions": {
                "map_classes": self.classes,
                "reference_classes": self.classes,
                "values": [[r(v) for v in row] for row in self.proportions],
            },
            "classes": {
                c: {
                    "users_accuracy": r(self.users[i]),
                    "users_accuracy_ci95": r(self.users_ci[i]),
                    "producers_accuracy": r(self.producers[i]),
                    "producers_accuracy_ci95": r(self.producers_ci[i]),
                    "mapped_area": r(self.mapped_area[i]),
                    "estimated_area": r(self.area[i]),
                    "estimated_area_se": r(self.area_se[i]),
                    "estimated_area_ci95": r(self.area_ci[i]),
                }
                for i, c in enumerate(self.classes)
            },
        }


def area_adjusted_accuracy(
    counts: np.ndarray, map_pixels: np.ndarray, pixel_area: float = 1.0, classes: list[str] | None = None
) -> AreaAccuracy:
    """Olofsson et al. (2014) estimators. A stratum with fewer than two samples gives no
    variance (NaN); a stratum without samples contributes no information (its proportions are
    0) and is reported with NaN accuracies."""
    n = np.asarray(counts, dtype=float)
    k = n.shape[0]
    if n.shape != (k, k) or len(map_pixels) != k:
        raise ValueError("counts must be k x k (map rows, reference columns) and map_pixels of length k")
    big_n = np.asarray(map_pixels, dtype=float)
    total = big_n.sum()
    w = big_n / total  # W_i, area weights of the strata
    n_i = n.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n_i[:, None] > 0, n / n_i[:, None], 0.0)  # n_ij / n_i.
        p = w[:, None] * frac  # eq. 4: p_ij = W_i n_ij / n_i.
        p_j = p.sum(axis=0)  # reference-class proportions
        overall = float(np.trace(p))  # eq. 1
        users = np.where(n_i > 0, np.diag(frac), np.nan)  # eq. 2
        producers = np.where(p_j > 0, np.diag(p) / p_j, np.nan)  # eq. 3
        dof = np.where(n_i > 1, n_i - 1, np.nan)
        # eq. 5: variance of overall accuracy
        v_overall = np.nansum(w**2 * users * (1 - users) / dof)
        v_users = users * (1 - users) / dof  # eq. 6
        # eq. 7: variance of producer's accuracy
        n_hat_j = (big_n[:, None] * frac).sum(axis=0)  # estimated reference pixels of class j
        v_producers = np.full(k, np.nan)
        for j in range(k):
            if n_hat_j[j] <= 0:
                continue
            own = big_n[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / dof[j]
            others = sum(
                big_n[i] ** 2 * frac[i, j] * (1 - frac[i, j]) / dof[i] for i in range(k) if i != j and n_i[i] > 0
            )
            v_producers[j] = (own + producers[j] ** 2 * others) / n_hat_j[j] ** 2
        # eq. 10: standard error of the proportion of each reference class
        se_p = np.sqrt(np.nansum(w[:, None] ** 2 * frac * (1 - frac) / dof[:, None], axis=0))
    area_total = total * pixel_area
    return AreaAccuracy(
        classes=list(classes) if classes else [str(i) for i in range(k)],
        proportions=p,
        overall=overall,
        overall_ci=Z95 * math.sqrt(v_overall),
        users=users,
        users_ci=Z95 * np.sqrt(v_users),
        producers=producers,
        producers_ci=Z95 * np.sqrt(v_producers),
        area=p_j * area_total,
        area_se=se_p * area_total,
        area_ci=Z95 * se_p * area_total,
        mapped_area=big_n * pixel_area,
    )


def sample_size(weights: np.ndarray, expected_users: np.ndarray, target_se: float) -> int:
    """Stratified random sample size for a target standard error of overall accuracy
    (Olofsson et al. 2014, eq. 13, after Cochran 1977): n = (sum W_i S_i / S(O))^2 with
    S_i = sqrt(U_i (1 - U_i)) from the anticipated user's accuracies."""
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    u = np.asarray(expected_users, dtype=float)
    if not 0 < target_se < 1:
        raise ValueError("the target standard error is a proportion in (0, 1), e.g. 0.01")
    return int(math.ceil((np.sum(w * np.sqrt(u * (1 - u))) / target_se) ** 2))


def allocate(total: int, weights: np.ndarray, minimum: int, available: np.ndarray | None = None) -> np.ndarray:
    """Samples per stratum: at least ``minimum`` in each (rare classes get enough to estimate
    their accuracy), the remainder proportional to area; never more than a stratum's pixels."""
    w = np.asarray(weights, dtype=float)
    k = len(w)
    cap = np.asarray(available, dtype=int) if available is not None else np.full(k, np.iinfo(np.int64).max)
    out = np.minimum(np.full(k, minimum), cap)
    rest = max(0, total - int(out.sum()))
    share = w / w.sum() * rest
    extra = np.floor(share).astype(int)
    for i in np.argsort(-(share - extra))[: rest - int(extra.sum())]:  # largest remainders
        extra[i] += 1
    sizes: np.ndarray = np.minimum(out + extra, cap)
    return sizes
