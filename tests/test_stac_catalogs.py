"""The STAC provider on the catalogs people use: Earth Search v1 (``sentinel-2-l2a``, ``-c1-l2a``,
``-l1c``), Planetary Computer and Copernicus Data Space (L2A and L1C), each a STAC API process on
loopback serving Items in that catalog's real layout (tests/stac_layouts.py) over the same real
pixels; s3:// assets from moto_server."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import rasterio
import requests
from distributed import Client

from landcoverpy.context import Context
from landcoverpy.errors import ProviderError
from landcoverpy.inputs import Season
from landcoverpy.pipeline.acquire import acquire
from landcoverpy.pipeline.dem import build_dem, ensure_dem_tiles, grid_lonlat_bounds
from landcoverpy.raster.grid import Grid
from landcoverpy.sources.dem import DEMSource, GLO30Source, make_dem_source
from landcoverpy.sources.hrefs import sign_href
from landcoverpy.sources.registry import make_provider
from landcoverpy.sources.stac import STACProvider
from landcoverpy.sources.stac_profiles import PROFILES, band_offset, item_assets, s3_location
from tests import servers
from tests.conftest import make_settings, shared_data
from tests.lineage_scene import make_scene, plain_app_data
from tests.stac_layouts import LAYOUTS, TEMPLATES, Layout, build_dem_item, build_layout, synthetic_dem
from tests.test_cli_status import run_cli

SEASON = Season("winter", dt.date(2016, 1, 1), dt.date(2016, 2, 29))
L2A_LAYOUTS = [name for name, layout in LAYOUTS.items() if layout.level == "L2A"]
# what each layout's search must send for the tile (the property and how it is filtered)
TILE_FILTERS = {
    "earth-search-l2a": ("query", "grid:code", "MGRS-18SVG"),
    "earth-search-c1": ("query", "grid:code", "MGRS-18SVG"),
    "earth-search-l1c": ("query", "grid:code", "MGRS-18SVG"),
    "planetary-computer": ("query", "s2:mgrs_tile", "18SVG"),
    "cdse": ("filter", "grid:code", "MGRS-18SVG"),
    "cdse-l1c": ("filter", "grid:code", "MGRS-18SVG"),
}


def profile_of(layout: Layout) -> str:
    """The profile a layout's catalog is: told by its landing page, or named by STAC_PROFILE."""
    return {"earth-search-aws": "earth-search", "microsoft-pc": "planetary-computer"}.get(
        layout.landing_id, layout.profile
    )


class Catalogs:
    """Every layout's STAC server, started on first use."""

    def __init__(self, root: Path, scene: Path, s3: servers.Server, logs: Path) -> None:
        self.root, self.scene, self.s3, self.logs = root, scene, s3, logs
        self.servers: dict[str, servers.Server] = {}
        self.s3_client = boto3.client(
            "s3",
            endpoint_url=f"http://{s3.address}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for bucket in {layout.s3_bucket for layout in LAYOUTS.values() if layout.s3_bucket} | {"copernicus-dem-30m"}:
            self.s3_client.create_bucket(Bucket=bucket)
        self.dem = synthetic_dem(scene / "B02.tif", root / "glo30.tif")

    def items(self, name: str) -> list[dict[str, Any]]:
        """The scene's Item in the layout, and the catalog's GLO-30 Item over it."""
        return [
            build_layout(LAYOUTS[name], self.scene, self.root, self.s3_client),
            build_dem_item(profile_of(LAYOUTS[name]), self.dem, self.root, self.s3_client),
        ]

    def start(
        self,
        name: str,
        items: list[dict[str, Any]],
        conforms: str | None = None,
        landing_id: str | None = None,
        page_size: int = 100,
        files: Path | None = None,
        methods: str = "GET,POST",
    ) -> servers.Server:
        layout = LAYOUTS[name]
        folder = Path(tempfile.mkdtemp(prefix=f"api-{name}-", dir=self.root))
        (folder / "items.json").write_text(json.dumps(items))
        port = servers.free_port()
        return servers.start(
            [
                sys.executable,
                "-m",
                "tests.stac_server",
                "--port",
                str(port),
                "--items",
                str(folder / "items.json"),
                "--files",
                str(files or self.root / "files"),
                "--landing-id",
                landing_id or layout.landing_id,
                "--conforms",
                conforms or layout.conforms,
                "--page-size",
                str(page_size),
                "--methods",
                methods,
            ],
            port,
            self.logs,
            f"stac-{name}",
            {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )

    def api(self, name: str) -> servers.Server:
        if name not in self.servers:
            self.servers[name] = self.start(name, self.items(name))
        return self.servers[name]

    def env(self, name: str) -> dict[str, str]:
        """The settings a user of that catalog gives: STAC_COLLECTION only where it is not the
        profile's default (Earth Search's older ``sentinel-2-l2a``)."""
        layout = LAYOUTS[name]
        chosen = (
            {}
            if layout.collection == PROFILES[profile_of(layout)].collection(layout.level)
            else {"STAC_COLLECTION": layout.collection}
        )
        return chosen | {
            "STAC_API_URL": f"http://{self.api(name).address}",
            "STAC_PROFILE": layout.profile,
            "PRODUCT_LEVEL": layout.level,
            "STAC_S3_ENDPOINT": f"http://{self.s3.address}",
            "STAC_S3_ACCESS_KEY": "testing",
            "STAC_S3_SECRET_KEY": "testing",
            "MIN_USEFUL_DATA_PERCENTAGE": "10",
        }

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stac-scene")
    source = make_scene(root)
    return {"product": next(source.iterdir()), "plain": plain_app_data(root)}


@pytest.fixture(scope="module")
def catalogs(
    scene: dict[str, Path], s3_server: servers.Server, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Catalogs]:
    cats = Catalogs(tmp_path_factory.mktemp("stac-catalogs"), scene["product"], s3_server, server_logs)
    yield cats
    cats.stop()


def searches(server: servers.Server) -> list[dict[str, Any]]:
    return [e for e in requests.get(f"http://{server.address}/_log", timeout=10).json() if e["kind"] == "search"]


def provider_for(catalogs: Catalogs, name: str, tmp_path: Path, **overrides: str) -> STACProvider:
    provider = make_provider("stac", make_settings(tmp_path, **(catalogs.env(name) | overrides)))
    assert isinstance(provider, STACProvider)
    return provider


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_is_found_with_its_bands_and_offsets(catalogs: Catalogs, name: str, tmp_path: Path) -> None:
    layout = LAYOUTS[name]
    provider = provider_for(catalogs, name, tmp_path)
    found = provider.search("18SVG", SEASON.start, SEASON.end)
    assert len(found) == 1, found
    product = found[0]
    assert provider.profile().name == profile_of(layout)
    assert product.level == layout.level and set(product.assets) == set(layout.bands)
    assert product.processing_baseline == "05.10"
    # the catalog's own metadata says how much to subtract: exactly what the served pixels carry
    assert set(product.extra["offsets"].values()) == {-float(layout.shift)}
    assert product.product_id.startswith(f"S2A_MSIL{layout.level[1:]}_20160112T155622")
    how, prop, value = TILE_FILTERS[name]
    sent = searches(catalogs.api(name))[-1]["params"]
    assert sent["collections"] == [layout.collection]
    if how == "query":
        assert sent["query"] == {prop: {"eq": value}}
    else:
        assert sent["filter"] == {"op": "=", "args": [{"property": prop}, value]} and "query" not in sent


def test_same_reflectance_from_every_layout(
    catalogs: Catalogs, scene: dict[str, Path], tmp_path: Path, process_client: Client
) -> None:
    """Each layout's product, acquired (on a worker process: the provider, its catalog and asset
    reader pickled there) and offset by its record, gives the scene's own numbers: identical
    reflectances whatever the catalog (COG or JPEG 2000, https or s3, offset or not)."""
    client = process_client
    for name in LAYOUTS:
        settings = make_settings(tmp_path / name, **catalogs.env(name))
        ctx = Context.open(settings)
        report = acquire(ctx, make_provider("stac", settings), ["18SVG"], [SEASON], client, progress=False)
        assert report.ok, (name, report.lines())
        record = ctx.catalog.find("products")[0]
        assert record["provider"] == "stac" and record["level"] == LAYOUTS[name].level
        for band in ("B02", "B05", "B8A", "B09"):
            ref = record["bands"][band]
            with (
                ctx.store.rasterio_env(),
                rasterio.open(ctx.store.raster_uri(ref["bucket"], ref["key"])) as got,
                rasterio.open(scene["product"] / f"{band}.tif") as want,
            ):
                dn, expected = got.read(1).astype("int32"), want.read(1).astype("int32")
            valid = expected > 0
            assert np.array_equal(dn > 0, valid), (name, band)
            np.testing.assert_array_equal(
                dn[valid] + int(record["offsets"][band]), expected[valid], err_msg=f"{name} {band}"
            )


def run_workflow(catalogs: Catalogs, scene: dict[str, Path], name: str, tmp_path: Path) -> np.ndarray:
    plain, out = scene["plain"], tmp_path / name / "out"
    env = {
        "LANDCOVERPY_HOME": str(tmp_path / name / "home"),
        "TMP_DIR": str(tmp_path / name / "tmp"),
        "DASK_N_WORKERS": "1",
    } | catalogs.env(name)
    res = run_cli(
        [
            "run",
            "--provider",
            "stac",
            "--no-progress",
            "--dataset",
            str(plain / "dataset.csv"),
            "--seasons",
            str(plain / "seasons.json"),
            "--lc-labels",
            str(plain / "lc_labels.json"),
            "--sl-labels",
            str(plain / "sl_labels.json"),
            "--output-dir",
            str(out),
        ],
        env,
        tmp_path,
        timeout=600,
    )
    assert res.returncode == 0, (name, res.stderr[-3000:])
    # the catalog's Copernicus GLO-30 DEM came with it (DEM_SOURCE unset: glo30 from STAC_API_URL)
    run = json.loads((out / "run.json").read_text())
    assert any(s["name"] == "dem" and s["did_work"] for s in run["stages"]), run["stages"]
    with rasterio.open(out / "classification_18SVG.tif") as src:
        return src.read(1)


def test_run_on_every_l2a_catalog_gives_the_same_map(
    catalogs: Catalogs, scene: dict[str, Path], tmp_path: Path
) -> None:
    maps = {name: run_workflow(catalogs, scene, name, tmp_path) for name in L2A_LAYOUTS}
    first = maps[L2A_LAYOUTS[0]]
    assert (first > 0).mean() > 0.99 and len(np.unique(first)) >= 3
    for name, category in maps.items():
        np.testing.assert_array_equal(category, first, err_msg=name)


@pytest.mark.slow  # two more whole runs; the L1C search, bands and offsets are in the default suite
@pytest.mark.parametrize("name", [n for n, layout in LAYOUTS.items() if layout.level == "L1C"])
def test_run_on_l1c_catalogs(catalogs: Catalogs, scene: dict[str, Path], tmp_path: Path, name: str) -> None:
    category = run_workflow(catalogs, scene, name, tmp_path)
    assert (category > 0).mean() > 0.99 and len(np.unique(category)) >= 3


@pytest.mark.parametrize("methods", ["GET,POST", "GET"])
def test_search_pages_through_every_item(catalogs: Catalogs, tmp_path: Path, methods: str) -> None:
    """Five Items served two per page: the search follows the ``next`` links to all of them, by
    POST where the API offers it, else by GET (the tile's query then travels in the URL)."""
    base = catalogs.items("earth-search-c1")[0]  # the scene's Item
    items = []
    for day in range(5):
        item = json.loads(json.dumps(base))
        item["id"] = f"{base['id']}-{day}"
        item["properties"]["datetime"] = f"2016-01-{12 + day:02d}T15:56:22Z"
        item["properties"]["s2:product_uri"] = item["properties"]["s2:product_uri"].replace(
            "20160112T", f"201601{12 + day:02d}T"
        )
        items.append(item)
    server = catalogs.start("earth-search-c1", items, page_size=2, methods=methods)
    try:
        provider = STACProvider(url=f"http://{server.address}", profile="earth-search")
        found = provider.search("18SVG", SEASON.start, SEASON.end)
        pages = searches(server)
    finally:
        server.stop()
    assert sorted(p.sensing_time.day for p in found) == [12, 13, 14, 15, 16]
    assert [p["method"] for p in pages] == ["POST" if "POST" in methods else "GET"] * 3
    assert [int(p["params"].get("token") or 0) for p in pages] == [0, 2, 4]
    queries = [p["params"]["query"] for p in pages]  # a JSON string in a GET URL, an object in a POST body
    assert [json.loads(q) if isinstance(q, str) else q for q in queries] == [{"grid:code": {"eq": "MGRS-18SVG"}}] * 3


def test_unknown_catalog_is_searched_by_footprint(catalogs: Catalogs, tmp_path: Path) -> None:
    """A catalog no profile knows, with neither the query nor the filter extension: the search
    sends the tile's footprint and keeps only the items of the tile (a neighbour's is dropped)."""
    item = catalogs.items("earth-search-c1")[0]
    neighbour = json.loads(json.dumps(item))
    neighbour["id"] = "S2A_T18SUG_20160112T155622_L2A"
    neighbour["properties"] |= {"grid:code": "MGRS-18SUG", "mgrs:grid_square": "UG"}
    far = json.loads(json.dumps(item))
    far["id"], far["bbox"] = "far-away", [10.0, 45.0, 11.0, 46.0]
    server = catalogs.start("earth-search-c1", [item, neighbour, far], conforms="none", landing_id="some-stac")
    try:
        provider = STACProvider(url=f"http://{server.address}", collection="sentinel-2-c1-l2a")
        found = provider.search("18SVG", SEASON.start, SEASON.end)
        sent = searches(server)[-1]["params"]
    finally:
        server.stop()
    assert provider.profile().name == "generic"
    assert [p.extra["stac_item"] for p in found] == [item["id"]]
    west, south, east, north = sent["bbox"]
    assert west < -75.5 < east and south < 37.7 < north and east - west < 1.5  # the tile's box, not the world's


def test_catalog_without_the_level_says_so(catalogs: Catalogs, tmp_path: Path, client: Client) -> None:
    """L1C asked of Planetary Computer (which has none): one line naming the catalog, not 'no products'."""
    settings = make_settings(tmp_path, **(catalogs.env("planetary-computer") | {"PRODUCT_LEVEL": "L1C"}))
    report = acquire(
        Context.open(settings), make_provider("stac", settings), ["18SVG"], [SEASON], client, progress=False
    )
    assert not report.ok
    assert report.entries[0].error is not None
    assert "Microsoft Planetary Computer offers no Sentinel-2 L1C collection" in report.entries[0].error


def test_items_without_needed_bands_are_one_clear_error(catalogs: Catalogs, tmp_path: Path) -> None:
    item = catalogs.items("earth-search-c1")[0]
    del item["assets"]["scl"]
    server = catalogs.start("earth-search-c1", [item])
    try:
        with pytest.raises(ProviderError, match=r"collection sentinel-2-c1-l2a: 1 item\(s\) of tile 18SVG.*lacks SCL"):
            STACProvider(url=f"http://{server.address}").search("18SVG", SEASON.start, SEASON.end)
    finally:
        server.stop()


def test_planetary_computer_hrefs_are_signed(catalogs: Catalogs, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Planetary Computer blob href gets the SAS token that the (loopback) token endpoint issues
    for its storage account and container."""
    import planetary_computer.sas
    import planetary_computer.settings

    server = catalogs.api("planetary-computer")
    monkeypatch.setenv("PC_SDK_SAS_URL", f"http://{server.address}/sas/v1/token")
    planetary_computer.settings.Settings.get.cache_clear()
    planetary_computer.sas.TOKEN_CACHE.clear()
    template = json.loads((TEMPLATES / "planetary-computer-sentinel-2-l2a.json").read_text())
    href = template["assets"]["B04"]["href"]
    try:
        signed = sign_href(href)
    finally:
        planetary_computer.settings.Settings.get.cache_clear()
    assert signed.startswith(href + "?") and "sig=test-sentinel2l2a01-sentinel2-l2" in signed
    tokens = [e for e in requests.get(f"http://{server.address}/_log", timeout=10).json() if e["kind"] == "token"]
    assert tokens[-1] == {"kind": "token", "account": "sentinel2l2a01", "container": "sentinel2-l2"}
    assert sign_href("http://127.0.0.1:1/files/B04.tif") == "http://127.0.0.1:1/files/B04.tif"  # not Azure: as is


@pytest.mark.parametrize(
    ("template", "offsets"),
    [
        ("earth-search-v1-sentinel-2-l2a.json", {0.0}),  # flag says applied (raster offset -0.1 ignored)
        ("earth-search-v1-sentinel-2-c1-l2a.json", {-1000.0}),  # raster:bands offset -0.1 / scale 0.0001
        ("earth-search-v1-sentinel-2-l1c.json", {-1000.0}),
        ("cdse-sentinel-2-l2a.json", {-1000.0}),  # STAC 1.1 raster:offset
        ("cdse-sentinel-2-l1c.json", {-1000.0}),
        ("planetary-computer-sentinel-2-l2a.json", {0.0}),  # no metadata: baseline 02.12 -> none
    ],
)
def test_offsets_of_the_real_items(template: str, offsets: set[float]) -> None:
    item = json.loads((TEMPLATES / template).read_text())
    assets = item_assets(item)
    assert {band_offset(item, a.meta) for b, a in assets.items() if b != "SCL"} == offsets
    # every reflectance band found, at its native resolution
    assert {"B02", "B05", "B8A", "B11"} <= set(assets)
    assert {b: a.resolution for b, a in assets.items() if b in ("B02", "B05", "B09")} == {
        "B02": 10,
        "B05": 20,
        "B09": 60,
    }


def test_planetary_computer_offset_follows_the_baseline() -> None:
    item = json.loads((TEMPLATES / "planetary-computer-sentinel-2-l2a.json").read_text())
    item["properties"]["s2:processing_baseline"] = "05.10"
    assert band_offset(item, item["assets"]["B04"]) == -1000.0
    del item["properties"]["s2:processing_baseline"]
    item["properties"]["s2:product_uri"] = "S2B_MSIL2A_20230629T212529_N0509_R043_T06VVN_20230629T080531.SAFE"
    assert band_offset(item, item["assets"]["B04"]) == -1000.0  # the _N0509_ of the product id


def test_cdse_s3_endpoint_comes_from_the_items_storage_scheme() -> None:
    item = json.loads((TEMPLATES / "cdse-sentinel-2-l2a.json").read_text())
    asset = item["assets"]["B02_10m"]
    assert s3_location(item, asset, PROFILES["cdse"], None).endpoint == "https://eodata.dataspace.copernicus.eu"
    assert s3_location(item, asset, PROFILES["cdse"], "http://127.0.0.1:9000").endpoint == "http://127.0.0.1:9000"
    l1c = json.loads((TEMPLATES / "earth-search-v1-sentinel-2-l1c.json").read_text())
    where = s3_location(l1c, l1c["assets"]["blue"], PROFILES["earth-search"], None)
    assert where.endpoint is None and where.requester_pays  # AWS, requester pays


def test_l1c_cirrus_band_is_mapped() -> None:
    for template in ("earth-search-v1-sentinel-2-l1c.json", "cdse-sentinel-2-l1c.json"):
        assets = item_assets(json.loads((TEMPLATES / template).read_text()))
        assert assets["B10"].resolution == 60 and assets["B10"].href.endswith("B10.jp2")


def test_profile_detection_from_the_url() -> None:
    from landcoverpy.sources.stac_profiles import detect_profile

    assert detect_profile("https://earth-search.aws.element84.com/v1").name == "earth-search"
    assert detect_profile("https://planetarycomputer.microsoft.com/api/stac/v1").name == "planetary-computer"
    assert detect_profile("https://stac.dataspace.copernicus.eu/v1").name == "cdse"
    assert detect_profile("https://example.org/stac").name == "generic"
    assert detect_profile("https://example.org/stac", explicit="cdse").name == "cdse"
    with pytest.raises(ProviderError, match="unknown STAC_PROFILE 'nope'"):
        detect_profile("https://example.org/stac", explicit="nope")


def test_default_collection_is_earth_search_collection_1() -> None:
    assert PROFILES["earth-search"].collection("L2A") == "sentinel-2-c1-l2a"
    assert PROFILES["earth-search"].collection("L1C") == "sentinel-2-l1c"
    assert PROFILES["earth-search"].collection("L2A", "sentinel-2-l2a") == "sentinel-2-l2a"


def test_glo30_dem_equals_the_aster_path_on_the_same_elevations(catalogs: Catalogs, tmp_path: Path) -> None:
    """The real pysheds DEM served as a Copernicus GLO-30 Item (Earth Search layout, COG in the
    public bucket's place on moto) and as an ASTER tile: elevation, slope and aspect on a UTM grid
    are the same arrays, and the two are different DEM assets."""
    dem_file = shared_data("pysheds-dem") / "dem.tif"
    item = build_dem_item(
        "earth-search", dem_file, catalogs.root, catalogs.s3_client, item_id="Copernicus_DSM_COG_10_N32_00_W098_00_DEM"
    )
    server = catalogs.start("earth-search-c1", [item])
    aster = tmp_path / "aster"
    aster.mkdir()
    shutil.copy(dem_file, aster / "ASTGTMV003_N32W098_dem.tif")
    settings = make_settings(
        tmp_path, **(catalogs.env("earth-search-c1") | {"STAC_API_URL": f"http://{server.address}"})
    )
    ctx = Context.open(settings)
    grid = Grid("EPSG:32614", (30.0, 0.0, 643000.0, 0.0, -30.0, 3630000.0), 400, 380)
    try:
        glo30 = make_dem_source(settings)
        assert isinstance(glo30, GLO30Source)
        names = glo30.tiles_for_bounds(*grid_lonlat_bounds(grid))
        glo_sources = ensure_dem_tiles(ctx, glo30, names)
    finally:
        server.stop()
    assert names == ["Copernicus_DSM_COG_10_N32_00_W098_00_DEM"]
    assert glo_sources[0]["key"] == "glo30/Copernicus_DSM_COG_10_N32_00_W098_00_DEM.tif"
    aster_sources = ensure_dem_tiles(ctx, DEMSource(str(aster)), ["ASTGTMV003_N32W098"])
    built = {
        kind: build_dem(settings, "14SPB", grid, sources, window_size=128).to_doc()
        for kind, sources in (("glo30", glo_sources), ("aster", aster_sources))
    }
    assert built["glo30"]["_id"] != built["aster"]["_id"]
    for layer in ("elevation", "slope", "aspect"):
        arrays = []
        for rec in built.values():
            loc = rec["layers"][layer]
            with rasterio.open(ctx.store.raster_uri(loc["bucket"], loc["key"])) as src:
                arrays.append(src.read(1))
        assert np.isfinite(arrays[0]).mean() > 0.99, layer
        np.testing.assert_array_equal(arrays[0], arrays[1], err_msg=layer)


def test_dem_source_settings() -> None:
    """A configured STAC catalog brings its GLO-30 DEM; DEM_SOURCE=none or an ASTER folder say
    otherwise; without a catalog there is no DEM unless one is named."""
    from landcoverpy.config import Settings

    assert Settings(_env_file=None).uses_dem is False
    assert Settings(_env_file=None, STAC_API_URL="https://example.org/stac").DEM_SOURCE == "glo30"
    assert Settings(_env_file=None, STAC_API_URL="https://example.org/stac", DEM_SOURCE="none").uses_dem is False
    assert Settings(_env_file=None, STAC_API_URL="https://example.org/stac", DEM_SOURCE="/aster").DEM_SOURCE == "/aster"
    empty = Settings(_env_file=None, STAC_API_URL="", DEM_SOURCE="")  # compose passes unset variables as ""
    assert empty.uses_dem is False and empty.STAC_API_URL.startswith("https://earth-search")
    assert isinstance(
        make_dem_source(Settings(_env_file=None, DEM_SOURCE="glo30+https://example.org/stac")), GLO30Source
    )
    assert isinstance(make_dem_source(Settings(_env_file=None, DEM_SOURCE="/aster")), DEMSource)


def nw_points(scene: dict[str, Path], folder: Path) -> tuple[Path, list[float]]:
    """App data whose points are those in the north-west part of the cut (rows and columns < 420
    of its 960), and their lon/lat box."""
    from pyproj import Transformer

    from tests.lineage_scene import points_in_cut

    points = points_in_cut()
    with rasterio.open(scene["product"] / "B02.tif") as src:
        transform, crs = src.transform, src.crs
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
        points["longitude"].to_numpy(), points["latitude"].to_numpy()
    )
    cols, rows = ~transform @ (x, y)
    mine = points[(rows < 420) & (cols < 420)]
    folder.mkdir(parents=True)
    for name in ("seasons.json", "lc_labels.json", "sl_labels.json"):
        shutil.copy(scene["plain"] / name, folder / name)
    mine.to_csv(folder / "dataset.csv", index=False)
    box = [
        float(mine["longitude"].min()),
        float(mine["latitude"].min()),
        float(mine["longitude"].max()),
        float(mine["latitude"].max()),
    ]
    return folder, box


def test_aoi_run_fetches_its_window_and_maps_as_the_whole_tile(
    catalogs: Catalogs, scene: dict[str, Path], tmp_path: Path
) -> None:
    """`run --aoi` over the points' corner of the tile (COGs tiled in 256 px) fetches only the
    window it needs, by byte ranges: at most 1.5x that window's share of the products' bytes; its
    map equals a whole-tile run's inside the window; a later whole run completes the products and
    maps like the whole-tile run everywhere."""
    from landcoverpy.raster.grid import grid_bounds

    item = build_layout(
        LAYOUTS["earth-search-c1"], scene["product"], tmp_path / "c256", catalogs.s3_client, blocksize=256
    )
    server = catalogs.start("earth-search-c1", [item], files=tmp_path / "c256" / "files")
    data, box = nw_points(scene, tmp_path / "nw")
    aoi = tmp_path / "aoi.geojson"
    west, south, east, north = box
    aoi.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [
                                [[west, south], [east, south], [east, north], [west, north], [west, south]]
                            ],
                        },
                    }
                ],
            }
        )
    )

    def run(home: str, *extra: str) -> tuple[np.ndarray, Grid, Context]:
        out = tmp_path / f"{home}-out-{len(list(tmp_path.glob(f'{home}-out-*')))}"
        env = (
            {
                "LANDCOVERPY_HOME": str(tmp_path / home),
                "TMP_DIR": str(tmp_path / "tmp"),
                "DASK_N_WORKERS": "1",
                "DEM_SOURCE": "none",
            }
            | catalogs.env("earth-search-c1")
            | {"STAC_API_URL": f"http://{server.address}"}
        )
        res = run_cli(
            [
                "run",
                "--provider",
                "stac",
                "--no-progress",
                "--dataset",
                str(data / "dataset.csv"),
                "--seasons",
                str(data / "seasons.json"),
                "--lc-labels",
                str(data / "lc_labels.json"),
                "--sl-labels",
                str(data / "sl_labels.json"),
                "--output-dir",
                str(out),
                *extra,
            ],
            env,
            tmp_path,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        assert "MB fetched" in res.stdout
        with rasterio.open(out / "classification_18SVG.tif") as src:
            values, grid = src.read(1), Grid.from_dataset(src)
        ctx = Context.open(make_settings(tmp_path, LANDCOVERPY_HOME=tmp_path / home))
        return values, grid, ctx

    try:
        small, small_grid, ctx = run("aoi", "--aoi", str(aoi))
        record = ctx.catalog.find("products")[0]
        whole, whole_grid, _ = run("whole")
        completed, completed_grid, ctx_after = run("aoi")  # the same home, now for the whole tile
    finally:
        server.stop()
    # what was fetched: the window, by byte ranges
    total = sum(p.stat().st_size for p in (tmp_path / "c256" / "files" / "earth-search-c1").glob("*.tif"))
    left, bottom, right, top = record["window"]["bounds"]
    wl, wb, wr, wt = grid_bounds(whole_grid)
    share = (right - left) * (top - bottom) / ((wr - wl) * (wt - wb))
    assert share < 0.3
    assert record["fetched_bytes"] <= 1.5 * share * total, (record["fetched_bytes"], share, total)
    assert (left, top) == (wl, wt) and small_grid.shape == (round((top - bottom) / 10), round((right - left) / 10))
    # the map inside the window is the whole-tile run's
    inside = whole[: small_grid.height, : small_grid.width]
    np.testing.assert_array_equal(small, inside)
    assert len(np.unique(small)) >= 3
    # completed: the products are whole now, and the map is the whole-tile run's
    after = ctx_after.catalog.find("products")[0]
    assert "window" not in after and after["fetched_bytes"] > 0
    assert completed_grid.same_as(whole_grid)
    np.testing.assert_array_equal(completed, whole)


def test_acquire_command_with_an_aoi_stores_windows(catalogs: Catalogs, scene: dict[str, Path], tmp_path: Path) -> None:
    """`landcoverpy acquire --aoi` fetches the same windows `run --aoi` would (JPEG 2000 over
    CDSE's s3:// here) and says how many bytes it took."""
    data, box = nw_points(scene, tmp_path / "nw")
    west, south, east, north = box
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(
        json.dumps(
            {
                "type": "Polygon",
                "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
            }
        )
    )
    env = {"LANDCOVERPY_HOME": str(tmp_path / "home"), "TMP_DIR": str(tmp_path / "tmp"), "DASK_N_WORKERS": "1"}
    res = run_cli(
        [
            "acquire",
            "--provider",
            "stac",
            "--no-progress",
            "--aoi",
            str(aoi),
            "--dataset",
            str(data / "dataset.csv"),
            "--seasons",
            str(data / "seasons.json"),
            "--lc-labels",
            str(data / "lc_labels.json"),
            "--sl-labels",
            str(data / "sl_labels.json"),
        ],
        env | catalogs.env("cdse"),
        tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "18SVG winter: 1 selected of 1: 1 fetched" in res.stdout and "MB fetched" in res.stdout
    record = Context.open(make_settings(tmp_path, LANDCOVERPY_HOME=tmp_path / "home")).catalog.find("products")[0]
    assert record["window"] and all("/w" in b["key"] for b in record["bands"].values())
    with rasterio.open(scene["product"] / "B02.tif") as whole:
        width = whole.width
    ref = record["bands"]["B02"]
    assert ref["width"] < width and ref["resolution"] == 10
