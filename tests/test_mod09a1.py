"""MOD09A1 as it is: the reader, its QA masking and the day-of-year placement of 8-day composites,
on format-faithful MOD09A1 granules (tests/mod09a1_fixture.py), and the MODIS STAC path with
Planetary Computer's ``modis-09A1-061`` Item layout (tests/fixtures/stac_items)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from rasterio.windows import Window

from landcoverpy.context import Context
from landcoverpy.pipeline.modis import ModisStacSource, acquire_modis, series_manifest
from landcoverpy.raster.grid import Grid
from landcoverpy.raster.series import aggregate_series, load_series_manifest
from landcoverpy.sources.modis import ModisQA, read_mod09
from landcoverpy.timesteps import parse_step
from tests import servers
from tests.conftest import make_settings
from tests.mod09a1_fixture import CASES, SIZE, granule_name, period, reflectance_dn, write_mod09a1
from tests.stac_layouts import TEMPLATES

TILE, YEAR = "h19v10", 2022
DAYS = (33, 41, 49)  # three consecutive 8-day composites: 2 Feb, 10 Feb, 18 Feb 2022


@pytest.fixture(scope="module")
def granules(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("mod09a1") / "files"
    return {doy: write_mod09a1(folder, TILE, YEAR, doy) for doy in DAYS}


def test_values_are_scaled_and_qa_rejected_pixels_masked(granules: dict[int, Path]) -> None:
    granule = read_mod09(granules[33])
    refl = granule.reflectance
    assert refl.shape == (7, SIZE, SIZE) and granule.date == "2022-02-02" and granule.tile == TILE
    clear = CASES["clear"]
    for band in range(1, 8):  # reflectance = DN / 10000 (scale_factor 10000 means divide)
        np.testing.assert_allclose(refl[band - 1][clear], reflectance_dn(band)[clear] / 10000.0, rtol=1e-6)
    nan = {case: np.isnan(refl[(slice(None), *where)]).all(axis=(1, 2)).tolist() for case, where in CASES.items()}
    assert nan["clear"] == [False] * 7 and nan["adjacent"] == [False] * 7
    assert nan["modland_cloud"] == [True] * 7  # MODLAND 10: every band
    assert nan["band3_noisy"] == [False, False, True, False, False, False, False]  # its own quality bits
    assert nan["state_cloudy"] == [True] * 7 and nan["state_shadow"] == [True] * 7
    assert nan["fill"] == [True] * 7
    strict = read_mod09(granules[33], ModisQA(drop_adjacent_cloud=True))
    assert np.isnan(strict.reflectance[(slice(None), *CASES["adjacent"])]).all()
    lenient = read_mod09(granules[33], ModisQA(drop_cloudy=False, drop_cloud_shadow=False))
    assert np.isfinite(lenient.reflectance[(slice(None), *CASES["state_cloudy"])]).all()


def test_day_of_acquisition_is_read(granules: dict[int, Path]) -> None:
    granule = read_mod09(granules[41])
    days = granule.day_of_year
    assert days is not None
    valid = days > 0
    assert not valid[CASES["fill"]].any()  # no observation: no day, and no reflectance
    assert days[valid].min() == 41 and days[valid].max() == 48  # inside the composite's 8 days
    # the granule's transform is the tile's: h19v10 starts 1 tile east of the meridian, 1 south of the equator
    assert granule.transform[2] == pytest.approx(1111950.519667) and granule.transform[5] == pytest.approx(
        -1111950.519667
    )


def pc_item(doy: int) -> dict:
    """Planetary Computer's modis-09A1-061 Item for the fixture granule of ``doy``."""
    item = json.loads((TEMPLATES / "planetary-computer-modis-09A1-061.json").read_text())
    start, end = period(YEAR, doy)
    name = granule_name(TILE, YEAR, doy)
    item["id"], item["links"] = name.rsplit(".", 2)[0], []
    item["properties"] |= {
        "start_datetime": f"{start}T00:00:00Z",
        "end_datetime": f"{end}T23:59:59Z",
        "modis:horizontal-tile": int(TILE[1:3]),
        "modis:vertical-tile": int(TILE[4:6]),
    }
    for key, asset in item["assets"].items():
        asset["href"] = "{BASE}/files/" + (name if key == "hdf" else f"not-served/{key}")
    return item


def test_stac_path_places_each_8_day_composite_by_day_of_year(
    granules: dict[int, Path], tmp_path: Path, server_logs: Path
) -> None:
    """Three Items in Planetary Computer's layout (one of another tile): the search asks for the
    tile, the granules are stored and read, and the series puts each composite in the 8-day step
    of its first day of year, the steps between them empty."""
    other = pc_item(33)
    other["id"], other["properties"]["modis:horizontal-tile"] = "MOD09A1.A2022033.h20v10.061", 20
    (tmp_path / "items.json").write_text(json.dumps([pc_item(d) for d in DAYS] + [other]))
    port = servers.free_port()
    server = servers.start(
        [
            sys.executable,
            "-m",
            "tests.stac_server",
            "--port",
            str(port),
            "--items",
            str(tmp_path / "items.json"),
            "--files",
            str(granules[33].parent),
            "--landing-id",
            "microsoft-pc",
        ],
        port,
        server_logs,
        "stac-modis-a1",
        {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        ctx = Context.open(make_settings(tmp_path))
        got = acquire_modis(
            ctx, ModisStacSource(f"http://127.0.0.1:{port}"), [TILE], dt.date(2022, 2, 1), dt.date(2022, 2, 28)
        )
        sent = [e for e in requests.get(f"http://127.0.0.1:{port}/_log", timeout=10).json() if e["kind"] == "search"]
    finally:
        server.stop()
    assert sent[-1]["params"]["query"] == {"modis:horizontal-tile": {"eq": 19}, "modis:vertical-tile": {"eq": 10}}
    assert sorted(ctx.catalog.get("modis", g)["date"] for g in got[TILE]) == ["2022-02-02", "2022-02-10", "2022-02-18"]
    items = load_series_manifest(series_manifest(ctx, TILE, YEAR, tmp_path / "series.json"))
    steps = parse_step("8day").bins(YEAR)
    first = read_mod09(granules[33])
    grid = Grid(first.crs, first.transform, SIZE, SIZE)
    window = Window(0, 0, 100, 300)  # the clear, cloudy and noisy-band-3 blocks
    with ctx.store.rasterio_env():
        series = aggregate_series(items, grid, steps, window=window)  # (pixels, steps, bands)
    filled = [int(np.isfinite(series[:, i]).any()) for i in range(len(steps))]
    assert [i for i, f in enumerate(filled) if f] == [(d - 1) // 8 for d in DAYS] == [4, 5, 6]
    clear = series.reshape(300, 100, len(steps), 7)[:100]
    np.testing.assert_allclose(clear[:, :, 4, 0], reflectance_dn(1)[:100, :100] / 10000.0, rtol=1e-6)
    assert np.isnan(series.reshape(300, 100, len(steps), 7)[100:200, :, 4]).all()  # MODLAND cloud stays a gap
