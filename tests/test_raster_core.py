"""Numeric core on arrays with hand-computed answers: radiometry, masks, indices, medians."""

from __future__ import annotations

import numpy as np
import pytest

from landcoverpy.errors import InputValidationError
from landcoverpy.raster import indices, masks
from landcoverpy.raster.composite import median_composite, valid_count
from landcoverpy.sentinel2 import baseline_offset, dn_to_reflectance, normalise_tile, tile_of


def test_baseline_offset_and_reflectance() -> None:
    assert baseline_offset("02.09") == 0.0
    assert baseline_offset("04.00") == -1000.0
    assert baseline_offset("05.10") == -1000.0
    assert baseline_offset(None) == 0.0
    dn = np.array([[0, 1000, 2500]], dtype="uint16")
    old = dn_to_reflectance(dn, 0.0)
    new = dn_to_reflectance(dn, -1000.0)
    assert np.isnan(old[0, 0]) and np.isnan(new[0, 0])
    np.testing.assert_allclose(old[0, 1:], [0.1, 0.25])
    np.testing.assert_allclose(new[0, 1:], [0.0, 0.15])
    # the same surface seen before and after baseline 04.00 agrees once the offset is applied
    np.testing.assert_allclose(
        dn_to_reflectance(np.array([3500], "uint16"), -1000.0), dn_to_reflectance(np.array([2500], "uint16"), 0.0)
    )


def test_tiles() -> None:
    assert normalise_tile("T30suf") == "30SUF"
    for bad in ("30SUFX", "61SUF", "30IUF", "3SUF", ""):
        with pytest.raises(InputValidationError):
            normalise_tile(bad)
    # Malaga (36.72 N, 4.42 W) lies in 30SUF; the demo scene in 18SVG
    assert tile_of(36.72, -4.42) == "30SUF"
    assert tile_of(37.70, -75.60) == "18SVG"


def test_scl_mask_classes() -> None:
    scl = np.array([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    m = masks.scl_mask(scl)
    assert m.tolist() == [[True, True, False, True, False, False], [False, False, True, True, True, True]]
    m2 = masks.scl_mask(scl, classes=(9,))
    assert m2.sum() == 3  # 0, 1 (nodata/defective) and 9


def test_scl_table_lookup_is_isin_for_any_classes() -> None:
    rng = np.random.default_rng(3)
    scl = rng.integers(0, 256, size=(64, 80)).astype("uint8")
    for classes in [masks.DEFAULT_SCL_CLASSES, (9,), (), (2, 255, 300)]:
        expected = np.isin(scl, tuple(classes) + masks.SCL_NODATA_CLASSES)
        np.testing.assert_array_equal(masks.scl_mask(scl, classes), expected)  # uint8: the table
        np.testing.assert_array_equal(masks.scl_mask(scl.astype("int64"), classes), expected)  # other: isin


def test_pixel_kernels_equal_the_numpy_expressions_bit_for_bit() -> None:
    """The composite stage's one-pass kernels give what the numpy passes they replace gave."""
    from landcoverpy.pipeline.composites import dequantise, to_uint16_reflectance
    from landcoverpy.sentinel2 import masked_reflectance

    rng = np.random.default_rng(7)
    dn = rng.integers(0, 20000, size=(97, 131)).astype("uint16")
    dn[rng.random(dn.shape) < 0.1] = 0
    invalid = rng.random(dn.shape) < 0.25
    for offset in (0.0, -1000.0):
        expected = masks.apply_mask(dn_to_reflectance(dn, offset), invalid)
        np.testing.assert_array_equal(masked_reflectance(dn, offset, invalid), expected)
        stack = np.full((2, *dn.shape), 7.0, dtype="float32")  # into a slice of a date stack
        masked_reflectance(dn, offset, invalid[:, :], out=stack[1])
        np.testing.assert_array_equal(stack[1], expected)
        assert (stack[0] == 7.0).all()
    with pytest.raises(ValueError, match="one shape"):
        masked_reflectance(dn, 0.0, invalid[:-1])

    # quantising: half-way cases, negatives, above 6.5535, infinities, NaN; float32 and float64
    refl = rng.normal(0.3, 0.4, size=(50, 61)).astype("float32")
    refl.flat[:8] = [np.nan, 0.00005, 0.00015, -0.2, 7.0, np.inf, -np.inf, 1.23445]
    for values in (refl, refl.astype("float64"), refl[:, ::2]):
        ok = ~np.isnan(values)
        expected16 = np.zeros(values.shape, dtype="uint16")
        expected16[ok] = np.clip(np.rint(values[ok] * 10000.0), 1, 65535).astype("uint16")
        np.testing.assert_array_equal(to_uint16_reflectance(values), expected16)
    stored = rng.integers(0, 65536, size=(3, 40, 33)).astype("uint16")
    stored[:, ::5] = 0
    expected32 = stored.astype("float32") / np.float32(10000.0)
    expected32[stored == 0] = np.nan
    np.testing.assert_array_equal(dequantise(stored), expected32)
    np.testing.assert_array_equal(dequantise(stored[1]), expected32[1])

    # normalized differences (8 of the 11 indices): NaN inputs, 0 / 0, x / 0, infinities
    for dtype in ("float32", "float64"):
        a, b = rng.random((60, 71)).astype(dtype), rng.random((60, 71)).astype(dtype)
        a[::5] = np.nan
        a[::7, ::3] = b[::7, ::3] = 0
        a[1, ::2] = -b[1, ::2]
        b[2, :5] = np.inf
        ratio = indices._ratio(a - b, a + b)
        assert np.isnan(ratio[::7, ::3]).all() and np.isnan(ratio[1, ::2]).all()
        np.testing.assert_array_equal(indices.normalized_difference(a, b), ratio)
        np.testing.assert_array_equal(indices.normalized_difference(a[:, 3:], b[:, 3:]), ratio[:, 3:])


def test_dilation_is_a_disk() -> None:
    m = np.zeros((7, 7), bool)
    m[3, 3] = True
    d = masks.dilate(m, 2)
    assert d.sum() == 13  # radius-2 disk: 1 + 4 + 4 + 4
    assert d[3, 1] and d[1, 3] and not d[1, 1]
    assert masks.dilate(m, 0) is m


def test_indices_known_values() -> None:
    b02, b03, b04 = np.float32([0.05]), np.float32([0.08]), np.float32([0.04])
    b05, b08, b8a, b11 = np.float32([0.10]), np.float32([0.40]), np.float32([0.38]), np.float32([0.20])
    np.testing.assert_allclose(indices.ndvi(b04, b08), (0.40 - 0.04) / 0.44, rtol=1e-6)
    np.testing.assert_allclose(indices.evi2(b04, b08), 2.5 * 0.36 / (0.40 + 2.4 * 0.04 + 1), rtol=1e-6)
    np.testing.assert_allclose(indices.mndwi(b03, b11), (0.08 - 0.20) / 0.28, rtol=1e-6)
    np.testing.assert_allclose(indices.ndre(b05, b8a), (0.38 - 0.10) / 0.48, rtol=1e-6)
    np.testing.assert_allclose(indices.osavi(b04, b08), 0.36 / (0.44 + 0.16), rtol=1e-6)
    np.testing.assert_allclose(indices.ndmi(b08, b11), 0.20 / 0.60, rtol=1e-6)
    np.testing.assert_allclose(indices.ndyi(b02, b03), 0.03 / 0.13, rtol=1e-6)
    np.testing.assert_allclose(indices.ri(b03, b04), -0.04 / 0.12, rtol=1e-6)
    np.testing.assert_allclose(indices.cri1(b02, b03), 1 / 0.05 - 1 / 0.08, rtol=1e-5)
    np.testing.assert_allclose(indices.bsi(b02, b04, b08, b11), (0.24 - 0.45) / 0.69, rtol=1e-6)
    np.testing.assert_allclose(indices.ndbi(b08, b11), -0.20 / 0.60, rtol=1e-6)


def test_indices_nodata_and_zero_division() -> None:
    a = np.array([np.nan, 0.0, 0.1], dtype="float32")
    b = np.array([0.2, 0.0, 0.3], dtype="float32")
    out = indices.ndvi(a, b)
    assert np.isnan(out[0]) and np.isnan(out[1]) and np.isfinite(out[2])
    assert np.isnan(indices.cri1(np.float32([0.0]), np.float32([0.1])))[0]


def test_median_composite_exact_with_clouds_at_known_pixels() -> None:
    rng = np.random.default_rng(3)
    stack = rng.uniform(0.01, 0.5, size=(4, 6, 5)).astype("float32")
    cloud = np.zeros_like(stack, dtype=bool)
    cloud[0, 0, 0] = cloud[1, 0, 0] = True  # two cloudy: median of the other two
    cloud[:, 1, 1] = True  # all cloudy: NaN
    cloud[0:3, 2, 2] = True  # one valid: that value
    masked = np.where(cloud, np.nan, stack)
    med = median_composite(masked)
    assert med[0, 0] == pytest.approx((stack[2, 0, 0] + stack[3, 0, 0]) / 2)
    assert np.isnan(med[1, 1])
    assert med[2, 2] == stack[3, 2, 2]
    assert med[4, 4] == pytest.approx(np.median(stack[:, 4, 4]))
    assert valid_count(masked)[0, 0] == 2 and valid_count(masked)[1, 1] == 0


def test_single_product_composite_is_that_product() -> None:
    one = np.array([[[0.1, np.nan]]], dtype="float32")
    out = median_composite(one)
    assert out[0, 0] == pytest.approx(0.1) and np.isnan(out[0, 1])


@pytest.mark.parametrize("n_products", [2, 3, 4, 7])
def test_sort_median_equals_nanmedian(n_products: int) -> None:
    import warnings

    rng = np.random.default_rng(n_products)
    stack = rng.uniform(0, 1, size=(n_products, 40, 30)).astype("float32")
    stack[rng.uniform(size=stack.shape) < 0.35] = np.nan
    stack[:, 0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.nanmedian(stack, axis=0)
    np.testing.assert_array_equal(median_composite(stack), expected.astype("float32"))


@pytest.mark.parametrize("dates", [1, 2, 3, 4, 5, 7, 8, 12, 13, 24, 30])
def test_median_kernel_equals_nanmedian_bit_for_bit(dates: int) -> None:
    """Random stacks with 30 % gaps, all-gap pixels and even valid counts, on one and two threads."""
    import warnings

    rng = np.random.default_rng(dates)
    stack = rng.uniform(0.0, 0.8, (dates, 67, 131)).astype("float32")
    stack[rng.uniform(size=stack.shape) < 0.3] = np.nan
    stack[:, :3, :3] = np.nan  # no valid date
    stack[: dates - dates % 2, 10, :] = 0.25  # ties
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(stack, axis=0)
    for threads in (1, 2):
        got = median_composite(stack, threads=threads)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    assert np.isnan(median_composite(stack)[:3, :3]).all()


def test_sorting_networks_sort_every_binary_input() -> None:
    """The 0-1 principle: a comparator network sorts everything if it sorts all 0/1 inputs."""
    import itertools

    from landcoverpy.raster.composite import sorting_network

    for n in range(1, 13):
        for bits in itertools.product((0, 1), repeat=n):
            x = list(bits)
            for i, j in sorting_network(n):
                if x[i] > x[j]:
                    x[i], x[j] = x[j], x[i]
            assert x == sorted(x), n


@pytest.mark.parametrize("dates", [1, 2, 3, 6, 12, 25])
def test_percentile_kernel_matches_nanpercentile(dates: int) -> None:
    import warnings

    from landcoverpy.raster.composite import percentile_composite

    rng = np.random.default_rng(dates)
    stack = rng.uniform(0.0, 0.8, (dates, 41, 53)).astype("float32")
    stack[rng.uniform(size=stack.shape) < 0.3] = np.nan
    stack[:, :2, :2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanpercentile(stack, [10, 25, 90], axis=0)
    got = percentile_composite(stack, [10, 25, 90])
    assert got.shape == (3, 41, 53) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # float32 rounding of numpy's float64 result
    assert np.isnan(got[:, :2, :2]).all()


@pytest.mark.parametrize("dates", [1, 4, 12])
def test_interpolated_ndvi_is_np_interp_per_pixel(dates: int) -> None:
    from landcoverpy.raster.timeseries import interpolated_ndvi, sample_days

    rng = np.random.default_rng(dates)
    days = rng.permutation(rng.choice(np.arange(92), size=dates, replace=False)).astype(float)  # any order
    ndvi = rng.uniform(-0.2, 0.9, (dates, 23, 29)).astype("float32")
    ndvi[rng.uniform(size=ndvi.shape) < 0.4] = np.nan
    ndvi[:, 0, :3] = np.nan  # never clear
    at = sample_days(91, 7)
    got = interpolated_ndvi(ndvi, days, at[[3, 0, 6, 1, 5, 2, 4]])[
        [1, 3, 5, 0, 6, 4, 2]
    ]  # sample days in any order too
    assert got.shape == (7, 23, 29) and got.dtype == np.float32
    order = np.argsort(days)
    for r in range(23):
        for c in range(29):
            v = ndvi[order, r, c]
            ok = np.isfinite(v)
            want = np.interp(at, days[order][ok], v[ok]) if ok.any() else np.full(7, np.nan)
            np.testing.assert_allclose(got[:, r, c], want, rtol=0, atol=1e-7)
    assert np.isnan(got[:, 0, :3]).all()
    np.testing.assert_allclose(np.diff(at), 91 / 6)  # evenly spaced, the season's first and last day included
    assert at[0] == 0 and at[-1] == 91
    with pytest.raises(ValueError):
        sample_days(91, 1)


@pytest.mark.parametrize("inside,outside", [(6, 4), (1, 2), (0, 3), (5, 0)])
def test_season_samples_fill_only_pixels_cloudy_all_season(inside: int, outside: int) -> None:
    """A pixel with a clear date in the season: exactly the season's own curve (the neighbours
    never bend it). A pixel cloudy on every date of the season: np.interp over the neighbours'
    dates (before the season: negative days; after it: beyond its last day). Cloudy everywhere:
    no data."""
    from landcoverpy.raster.timeseries import interpolated_ndvi, sample_days, season_samples

    rng = np.random.default_rng(inside * 10 + outside)
    own_days = rng.choice(np.arange(92), size=inside, replace=False).astype(float)
    out_days = np.concatenate(
        [
            -rng.choice(np.arange(1, 31), size=outside // 2, replace=False),
            92 + rng.choice(np.arange(1, 31), size=outside - outside // 2, replace=False),
        ]
    ).astype(float)
    days = np.concatenate([own_days, rng.permutation(out_days)])
    ndvi = rng.uniform(-0.2, 0.9, (inside + outside, 17, 19)).astype("float32")
    ndvi[rng.uniform(size=ndvi.shape) < 0.3] = np.nan
    ndvi[:inside, 2:9, 3:12] = np.nan  # a cloud over the whole season
    ndvi[:, 0, 0] = np.nan  # never clear
    at = sample_days(91, 6)
    got, filled = season_samples(ndvi, days, inside, at)
    assert got.shape == (6, 17, 19) and got.dtype == np.float32 and filled.shape == (17, 19)
    own_clear = np.isfinite(ndvi[:inside]).any(axis=0) if inside else np.zeros((17, 19), bool)
    np.testing.assert_array_equal(filled, ~own_clear & np.isfinite(ndvi[inside:]).any(axis=0))
    if inside:
        np.testing.assert_array_equal(got[:, own_clear], interpolated_ndvi(ndvi[:inside], own_days, at)[:, own_clear])
    for r, c in zip(*np.nonzero(~own_clear)):
        v, ok = ndvi[inside:, r, c], np.isfinite(ndvi[inside:, r, c])
        if not ok.any():
            assert np.isnan(got[:, r, c]).all() and not filled[r, c]
            continue
        order = np.argsort(days[inside:][ok])
        want = np.interp(at, days[inside:][ok][order], v[ok][order])
        np.testing.assert_allclose(got[:, r, c], want, rtol=0, atol=1e-6)
    assert np.isnan(got[:, 0, 0]).all()
    if outside:
        assert filled[2:9, 3:12].mean() > 0.5  # most of the cloud is filled from the neighbours
    else:
        assert not filled.any()


def test_drop_spikes_known_answers() -> None:
    from landcoverpy.raster.timeseries import drop_spikes

    nan = np.nan
    # dates given out of order: by day they are 0, 10, 20, 30, 40
    days = np.array([20, 0, 40, 10, 30])
    by_day = np.array(
        [
            [0.8, 0.3, 0.8, 0.8, 0.8],  # a dip at day 10: dropped
            [0.8, 0.3, nan, 0.8, 0.8],  # the same dip, its next valid date two steps on: dropped
            [0.8, 0.3, 0.8, 0.8, 0.76],  # ... and a 0.04 dip at the end: kept (one neighbour)
            [0.3, 0.8, 0.8, 0.8, 0.8],  # the first date: kept (one neighbour)
            [0.8, 0.77, 0.8, 0.8, 0.8],  # 0.03 below: kept
            [0.8, 0.3, 0.28, 0.8, 0.8],  # two dates down at one level: a real change (mowing), kept
            [0.8, 0.5, 0.3, 0.8, 0.8],  # falling then recovering: only the lowest is a dip below both
        ],
        dtype="float32",
    )
    ndvi = by_day.T[np.argsort(np.argsort(days))][:, None, :]  # (dates, 1, pixels) in the given order
    got = drop_spikes(ndvi, days, 0.05)[np.argsort(days), 0, :].T
    dropped = np.isnan(got) & ~np.isnan(by_day)
    assert dropped.tolist() == [
        [False, True, False, False, False],
        [False, True, False, False, False],
        [False, True, False, False, False],
        [False, False, False, False, False],
        [False, False, False, False, False],
        [False, False, False, False, False],
        [False, False, True, False, False],
    ]
    np.testing.assert_array_equal(got[~np.isnan(got)], by_day[~np.isnan(got)])
    np.testing.assert_array_equal(drop_spikes(ndvi, days, 0.0), ndvi)  # 0 keeps every date


def test_series_features_known_answers() -> None:
    from landcoverpy.raster.timeseries import series_features

    nan = np.nan
    ndvi = np.array(
        [[[0.2, nan, 0.5, nan]], [[nan, nan, 0.5, nan]], [[0.6, nan, 0.5, nan]], [[0.4, 0.3, 0.5, nan]]],
        dtype="float32",
    )
    out = series_features(ndvi, np.array([0, 10, 20, 30]))
    # pixel 0: dates 0, 20, 30 with NDVI 0.2, 0.6, 0.4 -> slope 4.0 / 466.67 per day, peak at day 20
    assert out["ndvi_amplitude"][0, 0] == pytest.approx(0.4)
    assert out["ndvi_slope"][0, 0] == pytest.approx(4.0 / (16.6667**2 + 3.3333**2 + 13.3333**2), rel=1e-4)
    assert out["ndvi_peak_day"][0, 0] == 20
    # pixel 1: one date -> no change seen (amplitude and slope 0); pixel 2: constant -> slope 0, first peak
    assert out["ndvi_amplitude"][0, 1] == 0 and out["ndvi_slope"][0, 1] == 0 and out["ndvi_peak_day"][0, 1] == 30
    assert out["ndvi_slope"][0, 2] == 0 and out["ndvi_peak_day"][0, 2] == 0
    # pixel 3: no valid date -> no data at all
    assert all(np.isnan(v[0, 3]) for v in out.values())
