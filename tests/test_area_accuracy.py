"""Area-adjusted accuracy and area estimates against the worked example published by Olofsson et
al. (2014, Remote Sensing of Environment 148, section 5): four strata of a Landsat change map
(30 m pixels, 0.09 ha), 640 samples."""

from __future__ import annotations

import numpy as np
import pytest

from landcoverpy.models.area import allocate, area_adjusted_accuracy, sample_size

# rows: map class, columns: reference class (deforestation, forest gain, stable forest, stable non-forest)
COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
MAP_PIXELS = np.array([200_000, 150_000, 3_200_000, 6_450_000])
CLASSES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]


def test_olofsson_worked_example() -> None:
    r = area_adjusted_accuracy(COUNTS, MAP_PIXELS, pixel_area=0.09, classes=CLASSES)  # hectares
    # published: areas (ha) with 95 % confidence intervals
    np.testing.assert_allclose(np.round(r.area), [21_158, 11_686, 285_770, 581_386])
    np.testing.assert_allclose(np.round(r.area_ci), [6_158, 3_756, 15_510, 16_282])
    assert round(r.overall, 2) == 0.95 and round(r.overall_ci, 2) == 0.02
    # published: user's and producer's accuracy of deforestation, 0.88 +- 0.07 and 0.75 +- 0.21
    assert round(r.users[0], 2) == 0.88 and round(r.users_ci[0], 2) == 0.07
    assert round(r.producers[0], 2) == 0.75 and round(r.producers_ci[0], 2) == 0.21
    # the error matrix in area proportions sums to 1 and its rows to the map's class shares
    assert r.proportions.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(r.proportions.sum(axis=1), MAP_PIXELS / MAP_PIXELS.sum())
    d = r.to_dict()
    assert d["classes"]["deforestation"]["estimated_area_ci95"] == pytest.approx(6158, abs=1)


def test_sample_design() -> None:
    weights = MAP_PIXELS / MAP_PIXELS.sum()
    # Olofsson et al. section 5.1.1: anticipated user's accuracies 0.7, 0.6, 0.9, 0.95 and a
    # target standard error of overall accuracy 0.01 give n = 641 (rounded up from 640.6)
    n = sample_size(weights, np.array([0.7, 0.6, 0.9, 0.95]), 0.01)
    assert n == 641
    alloc = allocate(n, weights, minimum=75)
    assert alloc.sum() == n and (alloc >= 75).all()
    assert alloc[3] > alloc[2] > alloc[0]  # the rest goes by area
    capped = allocate(n, weights, minimum=75, available=np.array([40, 10_000, 10_000, 10_000]))
    assert capped[0] == 40  # never more samples than pixels
    with pytest.raises(ValueError):
        sample_size(weights, np.array([0.7, 0.6, 0.9, 0.95]), 1.5)
