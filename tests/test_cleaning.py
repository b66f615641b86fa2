"""Post-classification cleaning: the majority filter on arrays with known answers, subcategories
kept inside their (cleaned) category, and the same result whatever the block size."""

from __future__ import annotations

import numpy as np
import pytest

from landcoverpy.raster.cleaning import clean, consistent_subcategories, majority_filter


def test_majority_filter_known_answers() -> None:
    cats = np.array([[1, 1, 1, 2, 2], [1, 2, 1, 2, 2], [1, 1, 1, 2, 2], [3, 3, 0, 2, 2]], dtype="uint8")
    out = majority_filter(cats, 3)
    assert out[1, 1] == 1  # the lone 2 inside the 1s goes
    assert out[3, 2] == 0  # nodata stays nodata
    assert out[0, 3] == 2 and out[3, 0] == 3  # ties and majorities at the edges keep their own class
    with pytest.raises(ValueError):
        majority_filter(cats, 4)


def test_subcategories_follow_their_new_category() -> None:
    cats = np.array([[1, 1, 1], [1, 2, 1], [1, 1, 1]], dtype="uint8")
    subs = np.array([[5, 5, 6], [5, 9, 6], [5, 5, 6]], dtype="uint8")  # 5, 6 belong to 1; 9 to 2
    cleaned, new_subs = clean(cats, subs, 3)
    assert cleaned[1, 1] == 1 and new_subs[1, 1] == 5  # the majority subcategory of category 1 around it
    lone = consistent_subcategories(
        np.array([[2, 2], [2, 2]], "uint8"), np.array([[1, 2], [2, 2]], "uint8"), np.array([[9, 9], [9, 9]], "uint8"), 3
    )
    assert lone[0, 0] == 1  # no neighbour was classified in category 1: not classified


def test_blockwise_with_a_halo_equals_the_whole_map() -> None:
    rng = np.random.default_rng(0)
    cats = rng.integers(0, 5, size=(120, 133)).astype("uint8")
    subs = np.where(cats > 0, cats * 10 + rng.integers(0, 3, size=cats.shape), 0).astype("uint8")
    size, halo = 5, 2
    whole_c, whole_s = clean(cats, subs, size)
    pad_c = np.pad(cats, halo)
    pad_s = np.pad(subs, halo)
    for block in (16, 37, 64):
        out_c = np.zeros_like(cats)
        out_s = np.zeros_like(subs)
        for r in range(0, cats.shape[0], block):
            for c in range(0, cats.shape[1], block):
                h, w = min(block, cats.shape[0] - r), min(block, cats.shape[1] - c)
                bc, bs = clean(
                    pad_c[r : r + h + 2 * halo, c : c + w + 2 * halo],
                    pad_s[r : r + h + 2 * halo, c : c + w + 2 * halo],
                    size,
                )
                out_c[r : r + h, c : c + w] = bc[halo : halo + h, halo : halo + w]
                out_s[r : r + h, c : c + w] = bs[halo : halo + h, halo : halo + w]
        np.testing.assert_array_equal(out_c, whole_c, err_msg=str(block))
        np.testing.assert_array_equal(out_s, whole_s, err_msg=str(block))
    ok = whole_s > 1
    assert (whole_s[ok] // 10 == whole_c[ok]).all()  # every subcategory inside its category
