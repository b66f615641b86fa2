"""Spatial blocks for honest validation: samples in one block never feed both train and test."""

from __future__ import annotations

import logging

import numpy as np
from pyproj import Transformer
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

log = logging.getLogger(__name__)

_EQUAL_AREA = Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True)  # WGS 84 / NSIDC EASE-Grid 2.0


def spatial_blocks(latitude: np.ndarray, longitude: np.ndarray, block_km: float) -> np.ndarray:
    """Block id per sample: a ``block_km`` square grid in an equal-area projection (EPSG:6933)."""
    x, y = _EQUAL_AREA.transform(np.asarray(longitude, dtype=float), np.asarray(latitude, dtype=float))
    size = block_km * 1000.0
    bx = np.floor(np.asarray(x) / size).astype(np.int64)
    by = np.floor(np.asarray(y) / size).astype(np.int64)
    return bx * 1_000_003 + by


def spatial_splits(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped, class-stratified K folds over the blocks; with too few blocks, one grouped 80/20
    hold-out. Raises ValueError when there is a single block (no honest split is possible)."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError("all samples fall in one spatial block: reduce SPATIAL_BLOCK_KM")
    if n_groups >= n_folds:
        cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y, groups)]
    log.warning("only %d spatial blocks: one grouped hold-out instead of %d folds", n_groups, n_folds)
    gss = GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=seed)
    return list(gss.split(np.zeros(len(y)), y, groups))
