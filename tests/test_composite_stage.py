"""Composites through the real stages: local provider -> acquire -> composite, on generated L2A
products with clouds at known pixels, and on the real eolearn-slovenia scenes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from landcoverpy import records
from landcoverpy.assets import lookup
from landcoverpy.assets.params import CompositeParams
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.errors import RasterError
from landcoverpy.inputs import Season
from landcoverpy.pipeline.acquire import acquire, fetch_product
from landcoverpy.pipeline.composites import build_composite, composite
from landcoverpy.raster.cog import validate_cog
from landcoverpy.sources.local import LocalProvider
from tests.synthetic import expected_median, make_l2a_product


def products_for(ctx: Context, tile: str, season: object) -> list[dict]:
    return lookup.products_for(ctx, tile, season, CompositeParams().max_products)  # type: ignore[arg-type]


TILE = "30SUF"
SEASON = Season("spring", dt.date(2021, 3, 1), dt.date(2021, 5, 31))
SIZE = 120


def stage(ctx: Context, source: Path, client: Client, params: CompositeParams) -> dict:
    rep = acquire(ctx, LocalProvider(source), [TILE], [SEASON], client, progress=False)
    assert rep.ok, rep.lines()
    comp = composite(ctx, [TILE], [SEASON], client, params, progress=False)
    assert not comp.failed, comp.failed
    return ctx.catalog.get("composites", (comp.built or comp.reused)[0])


def read(ctx: Context, loc: dict) -> np.ndarray:
    with ctx.store.rasterio_env(), rasterio.open(ctx.store.raster_uri(loc["bucket"], loc["key"])) as src:
        return src.read(1)


def generated(tmp_path: Path) -> list:
    src = tmp_path / "src"
    return [
        make_l2a_product(
            src,
            TILE,
            dt.datetime(2021, 3, 5, 11),
            SIZE,
            seed=1,
            baseline="02.09",
            cloud_boxes=[(0, 10, 0, 10), (30, 60, 30, 60)],
        ),
        make_l2a_product(
            src,
            TILE,
            dt.datetime(2021, 3, 25, 11),
            SIZE,
            seed=2,
            baseline="04.00",
            cloud_boxes=[(0, 10, 0, 10), (30, 60, 30, 60)],
        ),
        make_l2a_product(
            src,
            TILE,
            dt.datetime(2021, 4, 14, 11),
            SIZE,
            seed=3,
            baseline="05.10",
            cloud_boxes=[(5, 15, 5, 15), (30, 60, 30, 60)],
        ),
        make_l2a_product(
            src,
            TILE,
            dt.datetime(2021, 5, 4, 11),
            SIZE,
            seed=4,
            baseline="05.10",
            cloud_boxes=[(50, 60, 0, 20), (30, 60, 30, 60)],
        ),
    ]


def test_composite_equals_expected_median_exactly(
    tmp_path: Path, local_settings: Settings, process_client: Client
) -> None:
    client = process_client  # on a worker process: everything it gets is pickled there
    products = generated(tmp_path)
    ctx = Context.open(local_settings)
    rec = stage(ctx, tmp_path / "src", client, CompositeParams(window_size=64))
    assert sorted(rec["products"]) == sorted(p.product_id for p in products)
    for band in ("B02", "B05", "B8A", "B12"):
        np.testing.assert_array_equal(
            read(ctx, rec["bands"][band]), expected_median(products, band, SIZE), err_msg=band
        )
    # pixels cloudy in every product are nodata (0) with a valid count of 0, not a crash
    b02 = read(ctx, rec["bands"]["B02"])
    count = read(ctx, rec["valid_count"])
    assert (b02[60:120, 60:120] == 0).all() and (count[60:120, 60:120] == 0).all()
    assert count[0, 0] == 2 and count[10, 100] == 4
    for loc in [*rec["bands"].values(), *rec["indices"].values(), rec["valid_count"]]:
        path = ctx.store.raster_uri(loc["bucket"], loc["key"])
        valid, errors = validate_cog(path)
        assert valid, (loc["key"], errors)
    # indices are computed from the stored (quantised) bands
    b04, b08 = read(ctx, rec["bands"]["B04"]).astype("float64"), read(ctx, rec["bands"]["B08"]).astype("float64")
    ndvi = read(ctx, rec["indices"]["ndvi"])
    ok = (b04 > 0) & (b08 > 0)
    np.testing.assert_allclose(ndvi[ok], ((b08 - b04) / (b08 + b04))[ok], rtol=1e-5, atol=1e-6)
    assert np.isnan(ndvi[~ok]).all()


def test_windowed_equals_whole_and_rerun_reuses(tmp_path: Path, local_settings: Settings, client: Client) -> None:
    generated(tmp_path)
    ctx = Context.open(local_settings)
    products = products_for(ctx, TILE, SEASON) or None
    assert products is None  # nothing acquired yet
    rec = stage(ctx, tmp_path / "src", client, CompositeParams(window_size=64))
    products = products_for(ctx, TILE, SEASON)
    bucket = local_settings.MINIO_BUCKET_NAME_COMPOSITES
    prefix = rec["bands"]["B02"]["key"].rsplit("/", 1)[0] + "/"
    before = {name: read(ctx, loc) for name, loc in (rec["bands"] | rec["indices"]).items()}
    for params in (CompositeParams(window_size=4096), CompositeParams(window_size=32, threads=3)):
        ctx.store.delete_prefix(bucket, prefix)  # rebuilt from scratch with another window / threads
        again = build_composite(local_settings, TILE, SEASON, products, params).to_doc()
        assert again["_id"] == rec["_id"]  # window size and threads are not part of a composite's identity
        for name, loc in (again["bands"] | again["indices"]).items():
            np.testing.assert_array_equal(read(ctx, loc), before[name], err_msg=name)
            assert loc["sha256"] == (rec["bands"] | rec["indices"])[name]["sha256"]  # byte-identical COGs
    again = composite(ctx, [TILE], [SEASON], client, CompositeParams(window_size=64), progress=False)
    assert again.reused == [rec["_id"]] and not again.built


def test_one_product_season_is_that_product_masked(tmp_path: Path, local_settings: Settings, client: Client) -> None:
    p = make_l2a_product(tmp_path / "src", TILE, dt.datetime(2021, 3, 5, 11), SIZE, seed=9, cloud_boxes=[(0, 6, 0, 6)])
    ctx = Context.open(local_settings)
    rec = stage(ctx, tmp_path / "src", client, CompositeParams(window_size=50))
    np.testing.assert_array_equal(read(ctx, rec["bands"]["B04"]), expected_median([p], "B04", SIZE))
    assert (read(ctx, rec["bands"]["B04"])[:12, :12] == 0).all()


def test_products_on_different_grids_are_named(tmp_path: Path, local_settings: Settings, client: Client) -> None:
    a = make_l2a_product(tmp_path / "src", TILE, dt.datetime(2021, 3, 5, 11), SIZE, seed=1)
    b = make_l2a_product(
        tmp_path / "src", TILE, dt.datetime(2021, 3, 15, 11), SIZE, seed=2, origin=(300600.0, 4100000.0)
    )
    ctx = Context.open(local_settings)
    acquire(ctx, LocalProvider(tmp_path / "src"), [TILE], [SEASON], client, progress=False)
    rep = composite(ctx, [TILE], [SEASON], client, CompositeParams(window_size=64), progress=False)
    assert not rep.built
    message = rep.failed[f"{TILE} spring"]
    assert "different grids" in message and a.product_id in message and b.product_id in message
    with pytest.raises(RasterError, match="different grids"):
        build_composite(local_settings, TILE, SEASON, products_for(ctx, TILE, SEASON), CompositeParams()).to_doc()


def test_real_scenes_composite_on_s3(tmp_path: Path, server_settings: Settings, client: Client) -> None:
    """eolearn-slovenia's five real scenes with their real cloud masks, composited into S3."""
    from tests.realdata import slovenia_products

    settings = server_settings.model_copy(update={"MIN_USEFUL_DATA_PERCENTAGE": 0.0})
    made = slovenia_products(tmp_path / "src")
    years = sorted({m["when"].year for m in made})
    season = Season("all", dt.date(years[0], 1, 1), dt.date(years[-1], 12, 31))
    ctx = Context.open(settings)
    provider = LocalProvider(tmp_path / "src")
    rep = acquire(ctx, provider, ["33TVM"], [season], client, progress=False)
    assert rep.ok, rep.lines()
    # two of the five scenes are 100 % cloud in their real mask: found, but not selected
    cloudy = sorted(m["product_id"] for m in made if m["cloud"].all())
    assert len(cloudy) == 2 and rep.entries[0].found == 5 and len(rep.entries[0].selected) == 3
    assert not set(cloudy) & set(rep.entries[0].selected)
    # catalogue them anyway, so the composite must mask them out pixel by pixel
    for cand in provider.search("33TVM", season.start, season.end):
        if cand.product_id in cloudy:
            ctx.catalog.upsert("products", fetch_product(settings, provider, cand).to_doc())
    comp = composite(ctx, ["33TVM"], [season], client, CompositeParams(window_size=64), progress=False)
    assert comp.built and not comp.failed, comp.failed
    rec = ctx.catalog.get("composites", comp.built[0])
    assert len(rec["products"]) == 5
    for loc in [*rec["bands"].values(), *rec["indices"].values(), rec["valid_count"]]:
        assert ctx.store.raster_uri(loc["bucket"], loc["key"]).startswith("s3://")
        local = tmp_path / "check" / loc["key"]
        ctx.store.get_file(loc["bucket"], loc["key"], local)
        valid, errors = validate_cog(local)
        assert valid, (loc["key"], errors)
    count = read(ctx, rec["valid_count"])  # read in place from S3
    cloudy_everywhere = np.logical_and.reduce([m["cloud"] for m in made])
    expected_count = sum((~m["cloud"]).astype(int) for m in made)
    np.testing.assert_array_equal(count, expected_count)
    b04 = read(ctx, rec["bands"]["B04"])
    assert (b04[cloudy_everywhere] == 0).all()
    assert (b04[~cloudy_everywhere] > 0).all()
    ndvi = read(ctx, rec["indices"]["ndvi"])
    assert np.nanmedian(ndvi) > 0.3  # mostly forest and grassland


def test_percentile_layers_are_made_and_become_features(
    tmp_path: Path, local_settings: Settings, client: Client
) -> None:
    import warnings

    from landcoverpy.features import feature_names

    products = generated(tmp_path)
    ctx = Context.open(local_settings)
    rec = stage(ctx, tmp_path / "src", client, CompositeParams(window_size=64, percentiles=(10, 90)))
    assert {"B04_p10", "B04_p90", "B11_p10"} <= set(rec["bands"])
    assert rec["params"]["layers"][:3] == ["B02", "B03", "B04"] and "B02_p10" in rec["params"]["layers"]
    assert feature_names({"spring": records.from_doc(records.CompositeRecord, rec).as_source()})[10:12] == [
        "spring_B02_p10",
        "spring_B02_p90",
    ]
    median = read(ctx, rec["bands"]["B04"]).astype(int)
    p10, p90 = (read(ctx, rec["bands"][f"B04_p{q}"]).astype(int) for q in (10, 90))
    ok = median > 0
    assert (p10[ok] <= median[ok]).all() and (median[ok] <= p90[ok]).all() and (p10[ok] < p90[ok]).any()
    from tests.synthetic import expected_stack

    stack = expected_stack(products, "B04", SIZE)  # the same masking as the expected median
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanpercentile(stack, 90, axis=0)
    got = p90.astype(float) / 10000.0
    assert np.nanmax(np.abs(got[ok] - want[ok])) <= 0.5e-4 + 1e-7  # within the uint16 quantisation
    plain = ids_of(CompositeParams())
    assert plain == ids_of(CompositeParams(window_size=32))  # ids of composites without percentiles unchanged


def ids_of(params: CompositeParams) -> str:
    from landcoverpy.assets import ids

    return ids.composite_id(TILE, SEASON, ["p1"], params)


def test_timeseries_layers_follow_every_valid_date(tmp_path: Path, local_settings: Settings, client: Client) -> None:
    from landcoverpy.raster.indices import compute_index
    from landcoverpy.raster.timeseries import SPIKE_DELTA, drop_spikes, series_features
    from tests.synthetic import expected_stack

    products = generated(tmp_path)
    ctx = Context.open(local_settings)
    rec = stage(ctx, tmp_path / "src", client, CompositeParams(window_size=64, timeseries=True))
    assert {"ndvi_amplitude", "ndvi_slope", "ndvi_peak_day"} <= set(rec["indices"])
    assert rec["params"]["layers"][-3:] == ["ndvi_amplitude", "ndvi_slope", "ndvi_peak_day"]
    ndvi = compute_index(
        "ndvi", {"B04": expected_stack(products, "B04", SIZE), "B08": expected_stack(products, "B08", SIZE)}
    )
    days = np.array([(dt.date(2021, 3, d) - SEASON.start).days for d in (5, 25)] + [44, 64], dtype=float)
    want = series_features(drop_spikes(ndvi, days, SPIKE_DELTA), days)  # the default spike removal first
    for name, expected in want.items():
        np.testing.assert_allclose(read(ctx, rec["indices"][name]), expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_interpolated_ndvi_layers_sample_every_valid_date(
    tmp_path: Path, local_settings: Settings, client: Client
) -> None:
    """SERIES_SAMPLES: each pixel's NDVI at evenly spaced days of the season, interpolated between
    its own valid dates (clouds differ per product), as np.interp would; new features, new ids."""
    from landcoverpy.features import feature_names
    from landcoverpy.raster.indices import compute_index
    from landcoverpy.raster.timeseries import drop_spikes
    from tests.synthetic import expected_stack

    products = generated(tmp_path)
    ctx = Context.open(local_settings)
    params = CompositeParams(window_size=64, series_samples=5)
    rec = stage(ctx, tmp_path / "src", client, params)
    assert rec["params"]["layers"][-5:] == ["ndvi_t0", "ndvi_t1", "ndvi_t2", "ndvi_t3", "ndvi_t4"]
    assert "ndvi_amplitude" not in rec["indices"]  # only what was asked for
    assert feature_names({"spring": records.from_doc(records.CompositeRecord, rec).as_source()})[-5:] == [
        f"spring_ndvi_t{i}" for i in range(5)
    ]
    ndvi = compute_index(
        "ndvi", {"B04": expected_stack(products, "B04", SIZE), "B08": expected_stack(products, "B08", SIZE)}
    )
    days = np.array([(dt.date(2021, 3, d) - SEASON.start).days for d in (5, 25)] + [44, 64], dtype=float)
    ndvi = drop_spikes(ndvi, days, params.series_spike)  # the default: one-date dips are gaps
    at = np.linspace(0, (SEASON.end - SEASON.start).days, 5)
    got = np.stack([read(ctx, rec["indices"][f"ndvi_t{i}"]) for i in range(5)])
    checked = 0
    for r, c in [(0, 0), (5, 5), (12, 12), (40, 40), (55, 10), (100, 100), (7, 90)]:
        ok = np.isfinite(ndvi[:, r, c])
        if not ok.any():
            assert np.isnan(got[:, r, c]).all()  # cloudy on every date: no data, not a made-up value
            continue
        np.testing.assert_allclose(got[:, r, c], np.interp(at, days[ok], ndvi[ok, r, c]), rtol=1e-6, atol=1e-6)
        checked += int(ok.sum() < len(days))
    assert checked >= 3  # pixels with gaps were interpolated across them
    assert ids_of(params) not in (ids_of(CompositeParams()), ids_of(CompositeParams(series_samples=4)))
    assert CompositeParams.from_dict(rec["params"]) == CompositeParams(window_size=64, series_samples=5)
    assert ids_of(CompositeParams(series_samples=5, series_spike=0)) != ids_of(params)
    assert ids_of(CompositeParams(series_spike=0)) == ids_of(CompositeParams())  # no series layers: no effect


def mid_season(tmp_path: Path, local_settings: Settings, client: Client) -> tuple[list, Context, Season]:
    """The four generated products catalogued, and a season (20 March - 30 April) that holds the
    middle two: the first and last are just outside it (its neighbours)."""
    products = generated(tmp_path)
    ctx = Context.open(local_settings)
    everything = Season("all", dt.date(2021, 3, 1), dt.date(2021, 5, 31))
    assert acquire(ctx, LocalProvider(tmp_path / "src"), [TILE], [everything], client, progress=False).ok
    return products, ctx, Season("mid", dt.date(2021, 3, 20), dt.date(2021, 4, 30))


def test_spike_test_of_a_seasons_edges_looks_at_the_products_just_outside(
    tmp_path: Path, local_settings: Settings, client: Client
) -> None:
    """A season from 20 March to 30 April holds two of the four products; the two outside (5 March,
    4 May: within SERIES_SPIKE_MARGIN) are the neighbours its edge dates are tested against. They
    change which dates are dips, enter the composite's id and record (and STAC lineage), and
    nothing else: the medians are the season's own; and a pixel cloudy on both of the season's dates
    takes its NDVI samples from theirs instead of being a hole in every map."""
    from landcoverpy.assets.stac import composite_item
    from landcoverpy.raster.indices import compute_index
    from landcoverpy.raster.timeseries import drop_spikes, interpolated_ndvi, sample_days, season_samples
    from tests.synthetic import expected_stack

    products, ctx, mid = mid_season(tmp_path, local_settings, client)
    built = {}
    for margin, spike in ((30, 0.05), (0, 0.05), (30, 0.0)):
        params = CompositeParams(window_size=64, series_samples=4, series_margin=margin, series_spike=spike)
        comp = composite(ctx, [TILE], [mid], client, params, progress=False)
        assert not comp.failed, comp.failed
        built[margin, spike] = ctx.catalog.get("composites", comp.built[0])
        # the stage that builds and the lookup that later stages use agree on the neighbours (so on the id)
        assert lookup.composite_for(ctx, TILE, mid, params).id == comp.built[0]
    with_n, without = built[30, 0.05], built[0, 0.05]
    # without spike removal the neighbours are still read: they fill the samples of pixels cloudy all season
    assert sorted(built[30, 0.0]["series_neighbours"]) == sorted(with_n["series_neighbours"])
    assert sorted(with_n["series_neighbours"]) == sorted([products[0].product_id, products[3].product_id])
    assert without["series_neighbours"] == [] and with_n["_id"] != without["_id"]
    assert sorted(with_n["products"]) == sorted(without["products"]) == sorted(p.product_id for p in products[1:3])
    np.testing.assert_array_equal(read(ctx, with_n["bands"]["B04"]), read(ctx, without["bands"]["B04"]))
    assert (
        products[0].product_id
        in composite_item(
            records.from_doc(records.CompositeRecord, with_n), lambda loc, _d, key=None: key or loc.key
        ).properties["landcoverpy:inputs"]
    )

    ndvi = compute_index(
        "ndvi", {"B04": expected_stack(products, "B04", SIZE), "B08": expected_stack(products, "B08", SIZE)}
    )
    days = np.array(
        [
            (d - mid.start).days
            for d in (dt.date(2021, 3, 5), dt.date(2021, 3, 25), dt.date(2021, 4, 14), dt.date(2021, 5, 4))
        ],
        dtype=float,
    )
    at = sample_days((mid.end - mid.start).days, 4)
    seen = [1, 2, 0, 3]  # the season's own dates first, then its neighbours
    want, filled = season_samples(drop_spikes(ndvi, days, with_n["params"]["series_spike"])[seen], days[seen], 2, at)
    plain = interpolated_ndvi(ndvi[1:3], days[1:3], at)  # two dates alone: no date has two neighbours
    got = np.stack([read(ctx, with_n["indices"][f"ndvi_t{i}"]) for i in range(4)])
    got0 = np.stack([read(ctx, without["indices"][f"ndvi_t{i}"]) for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got0, plain, rtol=1e-6, atol=1e-6)
    clear = ~filled & np.isfinite(plain).all(axis=0)
    assert (np.abs(got - got0)[:, clear] > 1e-3).mean() > 0.01  # the neighbours found dips
    # pixels cloudy on both of the season's dates: holes without neighbours, filled from their dates with them
    # (a pixel whose dates the neighbours showed as dips is filled too; one cloudy on all four dates is not)
    cloudy = ~np.isfinite(ndvi[1:3]).any(axis=0) & np.isfinite(ndvi[[0, 3]]).any(axis=0)
    assert cloudy.sum() > 20 and (filled >= cloudy).all()
    assert np.isnan(got0[:, cloudy]).all() and np.isfinite(got[:, cloudy]).all()
    got_no_spike = np.stack([read(ctx, built[30, 0.0]["indices"][f"ndvi_t{i}"]) for i in range(4)])
    assert np.isfinite(got_no_spike[:, cloudy]).all()


def test_index_groups_cover_every_index_once_with_just_their_bands() -> None:
    from landcoverpy.pipeline.composites import index_groups
    from landcoverpy.raster.indices import INDICES

    for names in (tuple(INDICES), ("ndvi",), ("bsi", "ndvi", "osavi", "ndmi"), ()):
        groups = index_groups(names)
        flat = [n for _, members in groups for n in members]
        assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
        for needed, members in groups:
            assert all(set(INDICES[m][1]) == set(needed) for m in members)
        assert len({needed for needed, _ in groups}) == len(groups)  # one task per band set
    assert index_groups(("ndvi", "ndmi", "evi2")) == [(("B04", "B08"), ("ndvi", "evi2")), (("B08", "B11"), ("ndmi",))]


def test_series_samples_setting_reaches_the_composite_params(tmp_path: Path) -> None:
    import pydantic

    settings = Settings(_env_file=None, LANDCOVERPY_HOME=tmp_path, SERIES_SAMPLES=6)  # type: ignore[call-arg]
    assert CompositeParams.from_settings(settings).series_layers() == [f"ndvi_t{i}" for i in range(6)]
    with pytest.raises(pydantic.ValidationError, match="at least 2"):
        Settings(_env_file=None, LANDCOVERPY_HOME=tmp_path, SERIES_SAMPLES=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="series_samples"):
        CompositeParams(series_samples=1)


def test_gap_fill_takes_a_cloudy_pixels_median_from_the_products_just_outside(
    tmp_path: Path, local_settings: Settings, client: Client
) -> None:
    """COMPOSITE_GAP_FILL: a season from 20 March to 30 April holds two products; where both are
    cloudy, the median (and so every index) comes from the two products just outside it (5 March,
    4 May), and so do the NDVI time-series features; the valid count stays the season's own (0
    there); everywhere else the composite is the season's own. Without it those pixels are nodata.
    A new id either way."""
    from tests.synthetic import expected_median

    products, ctx, mid = mid_season(tmp_path, local_settings, client)
    recs = {}
    for fill in (False, True):
        params = CompositeParams(window_size=64, gap_fill=fill, timeseries=True)
        comp = composite(ctx, [TILE], [mid], client, params, progress=False)
        assert not comp.failed, comp.failed
        recs[fill] = ctx.catalog.get("composites", comp.built[0])
        assert lookup.composite_for(ctx, TILE, mid, params).id == comp.built[0]
    plain, filled = recs[False], recs[True]
    assert plain["_id"] != filled["_id"]  # the same neighbours (the spike test reads them too), another id
    assert (
        sorted(filled["series_neighbours"])
        == sorted(plain["series_neighbours"])
        == sorted([products[0].product_id, products[3].product_id])
    )
    assert lookup.series_neighbours(ctx, TILE, mid, CompositeParams(gap_fill=True))  # gap filling alone reads them
    assert not lookup.series_neighbours(ctx, TILE, mid, CompositeParams())
    assert CompositeParams.from_dict(filled["params"]).gap_fill
    for band in ("B04", "B08", "B11"):
        own = expected_median(products[1:3], band, SIZE)
        outside = expected_median([products[0], products[3]], band, SIZE)
        np.testing.assert_array_equal(read(ctx, plain["bands"][band]), own, err_msg=band)
        np.testing.assert_array_equal(read(ctx, filled["bands"][band]), np.where(own > 0, own, outside), err_msg=band)
    holes = (expected_median(products[1:3], "B04", SIZE) == 0) & (
        expected_median([products[0], products[3]], "B04", SIZE) > 0
    )
    assert holes.sum() > 20  # cloudy on both of the season's dates, clear on a neighbour's
    np.testing.assert_array_equal(read(ctx, filled["valid_count"]), read(ctx, plain["valid_count"]))
    assert (read(ctx, filled["valid_count"])[holes] == 0).all()
    ndvi_plain, ndvi_filled = read(ctx, plain["indices"]["ndvi"]), read(ctx, filled["indices"]["ndvi"])
    assert np.isnan(ndvi_plain[holes]).all() and np.isfinite(ndvi_filled[holes]).all()
    clear = np.isfinite(ndvi_plain)
    np.testing.assert_array_equal(ndvi_filled[clear], ndvi_plain[clear])
    # the time-series features of those pixels come from the neighbours' dates too
    from landcoverpy.raster.indices import compute_index
    from landcoverpy.raster.timeseries import drop_spikes, series_features
    from tests.synthetic import expected_stack

    seen = [1, 2, 0, 3]  # the season's own dates, then its neighbours
    ndvi = compute_index(
        "ndvi", {"B04": expected_stack(products, "B04", SIZE)[seen], "B08": expected_stack(products, "B08", SIZE)[seen]}
    )
    days = np.array(
        [
            (d - mid.start).days
            for d in (dt.date(2021, 3, 25), dt.date(2021, 4, 14), dt.date(2021, 3, 5), dt.date(2021, 5, 4))
        ],
        dtype=float,
    )
    stack = drop_spikes(ndvi, days, CompositeParams().series_spike)
    own, outside = series_features(stack[:2], days[:2]), series_features(stack[2:], days[2:])
    for name in ("ndvi_amplitude", "ndvi_slope", "ndvi_peak_day"):
        got_plain, got_filled = read(ctx, plain["indices"][name]), read(ctx, filled["indices"][name])
        assert np.isnan(got_plain[holes]).all(), name
        np.testing.assert_allclose(got_filled[holes], outside[name][holes], rtol=1e-5, atol=1e-6, err_msg=name)
        seen_own = np.isfinite(own[name])
        np.testing.assert_array_equal(got_filled[seen_own], got_plain[seen_own], err_msg=name)
