"""MODIS acquisition from a folder of granules: stored raw + as QA-applied GeoTIFF, catalogued,
idempotent, with the abundance manifest."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError
from landcoverpy.pipeline.modis import ModisSource, acquire_modis, check_modis_tile, series_manifest
from tests.conftest import make_settings, shared_data
from tests.test_modis import GRANULE


def test_acquire_and_manifest(tmp_path: Path) -> None:
    src = tmp_path / "granules"
    src.mkdir()
    shutil.copy(shared_data("modis-mod09ga") / GRANULE, src / GRANULE)
    ctx = Context.open(make_settings(tmp_path))
    got = acquire_modis(ctx, ModisSource(str(src)), ["h14v17"], dt.date(2008, 10, 1), dt.date(2008, 10, 31))
    gid = GRANULE.removesuffix(".hdf")
    assert got == {"h14v17": [gid]}
    rec = ctx.catalog.get("modis", gid)
    assert rec["date"] == "2008-10-22" and rec["tile"] == "h14v17" and rec["product"] == "MOD09GA"
    assert ctx.store.size(**rec["raw"]) == (src / GRANULE).stat().st_size
    with rasterio.open(ctx.store.raster_uri(**rec["reflectance"])) as ds:
        assert ds.count == 7 and np.isnan(ds.read(1)).mean() > 0.99
    again = acquire_modis(ctx, ModisSource(str(src)), ["h14v17"], dt.date(2008, 10, 1), dt.date(2008, 10, 31))
    assert again == got and ctx.catalog.count("modis") == 1
    assert acquire_modis(ctx, ModisSource(str(src)), ["h14v17"], dt.date(2009, 1, 1), dt.date(2009, 2, 1)) == {
        "h14v17": []
    }
    manifest = series_manifest(ctx, "h14v17", 2008, tmp_path / "series.json")
    items = json.loads(manifest.read_text())
    assert items == [{"date": "2008-10-22", "path": ctx.store.raster_uri(**rec["reflectance"])}]


@pytest.mark.parametrize("bad", ["h36v01", "h1v1", "x14v17", "h14v18"])
def test_bad_modis_tiles(bad: str) -> None:
    with pytest.raises(InputValidationError, match="hHHvVV"):
        check_modis_tile(bad)


def test_acquire_over_https_listing(tmp_path: Path, server_logs: Path) -> None:
    """The LP DAAC layout (date folders with HTML listings) served by a plain HTTP server process."""
    import sys

    from tests import servers

    site = tmp_path / "site" / "2008.10.22"
    site.mkdir(parents=True)
    shutil.copy(shared_data("modis-mod09ga") / GRANULE, site / GRANULE)
    port = servers.free_port()
    server = servers.start(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path / "site")],
        port,
        server_logs,
        "lpdaac",
    )
    try:
        source = ModisSource(f"http://127.0.0.1:{port}", token="earthdata-token")
        found = source.search("h14v17", dt.date(2008, 10, 20), dt.date(2008, 10, 24))
        assert [g.name for g in found] == [GRANULE]
        ctx = Context.open(make_settings(tmp_path))
        got = acquire_modis(ctx, source, ["h14v17"], dt.date(2008, 10, 20), dt.date(2008, 10, 24))
    finally:
        server.stop()
    rec = ctx.catalog.get("modis", got["h14v17"][0])
    assert ctx.store.size(**rec["raw"]) == (site / GRANULE).stat().st_size


def test_acquire_from_a_stac_api(tmp_path: Path, server_logs: Path) -> None:
    """modis-09A1-061-shaped items (Planetary Computer) whose `hdf` asset is the granule."""
    import sys

    from landcoverpy.pipeline.modis import ModisStacSource
    from tests import servers

    files = tmp_path / "files"
    files.mkdir()
    shutil.copy(shared_data("modis-mod09ga") / GRANULE, files / GRANULE)
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "collection": "modis-09A1-061",
        "id": GRANULE[:-4],
        "geometry": None,
        "bbox": None,
        "links": [],
        "properties": {"datetime": "2008-10-22T00:00:00Z", "modis:horizontal-tile": 14, "modis:vertical-tile": 17},
        "assets": {"hdf": {"href": "{BASE}/files/" + GRANULE, "type": "application/x-hdf"}},
    }
    other = json.loads(json.dumps(item)) | {"id": "other"}
    other["properties"]["modis:horizontal-tile"] = 15
    (tmp_path / "items.json").write_text(json.dumps([item, other]))
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
            str(files),
        ],
        port,
        server_logs,
        "stac-modis",
        {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        source = ModisStacSource(f"http://127.0.0.1:{port}")
        found = source.search("h14v17", dt.date(2008, 10, 1), dt.date(2008, 10, 31))
        assert [g.name for g in found] == [GRANULE]
        ctx = Context.open(make_settings(tmp_path))
        got = acquire_modis(ctx, source, ["h14v17"], dt.date(2008, 10, 1), dt.date(2008, 10, 31))
    finally:
        server.stop()
    assert ctx.catalog.get("modis", got["h14v17"][0])["date"] == "2008-10-22"
