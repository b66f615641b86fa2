"""Post-classification cleaning on arrays: a majority (mode) filter of the category map, then the
subcategories made consistent with the cleaned categories.

The filter is local (a ``size`` x ``size`` neighbourhood), so a block processed with a halo of
``size // 2`` pixels gives exactly the pixels a whole-map filter gives: block edges never show.
Ties keep the pixel's own class; nodata (0) neither votes nor changes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

NOT_CLASSIFIED = 1


def _votes(labels: np.ndarray, values: np.ndarray, size: int, mask: np.ndarray | None = None) -> np.ndarray:
    """(len(values), rows, cols) number of neighbours with each value (within ``mask``)."""
    out = np.empty((len(values), *labels.shape), dtype=np.int32)
    for i, v in enumerate(values):
        hit = labels == v
        if mask is not None:
            hit &= mask
        # sum over the window (uniform_filter of a 0/1 array times the window area, exact in float64)
        out[i] = np.rint(ndimage.uniform_filter(hit.astype(np.float64), size=size, mode="constant") * size * size)
    return out


def majority_filter(labels: np.ndarray, size: int) -> np.ndarray:
    """Each valid pixel takes the most frequent class of its neighbourhood (its own on ties)."""
    if size < 3 or size % 2 == 0:
        raise ValueError("the cleaning window is an odd size >= 3")
    values = np.unique(labels[labels > 0])
    if values.size == 0:
        return labels.copy()
    votes = _votes(labels, values, size)
    best = votes.max(axis=0)
    own = np.zeros(labels.shape, dtype=np.int32)
    for i, v in enumerate(values):
        own[labels == v] = votes[i][labels == v]
    winner = values[np.argmax(votes, axis=0)]
    out = np.where(own == best, labels, winner).astype(labels.dtype)
    out[labels == 0] = 0
    return out


def consistent_subcategories(
    categories: np.ndarray, cleaned: np.ndarray, subcategories: np.ndarray, size: int
) -> np.ndarray:
    """Subcategories after the categories were cleaned: where a pixel's category changed, the
    majority subcategory among its neighbours that were classified in the new category (so it
    belongs to that category), or not classified (1) when none was; unchanged pixels keep theirs."""
    changed = (categories != cleaned) & (cleaned > 0)
    out = subcategories.copy()
    if not changed.any():
        return out
    for c in np.unique(cleaned[changed]):
        target = changed & (cleaned == c)
        donors = categories == c  # their subcategory belongs to category c
        values = np.unique(subcategories[donors & (subcategories > 0)])
        if values.size == 0:
            out[target] = NOT_CLASSIFIED
            continue
        votes = _votes(subcategories, values, size, mask=donors)
        best = votes.max(axis=0)
        winner = values[np.argmax(votes, axis=0)]
        out[target] = np.where(best[target] > 0, winner[target], NOT_CLASSIFIED)
    out[cleaned == 0] = 0
    return out


def clean(categories: np.ndarray, subcategories: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    cleaned = majority_filter(categories, size)
    return cleaned, consistent_subcategories(categories, cleaned, subcategories, size)
