"""Lineage end to end, as a user runs the CLI, on the embedded default and on real local servers
(moto_server, secantusd, a dask scheduler + workers): maps addressed by what made them, lookups
that follow every setting, any label name, the run lease, STAC publication.

The workflow runs on a cut of the demo's real scene (tests/lineage_scene.py) so each run takes
seconds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from landcoverpy.config import Settings
from landcoverpy.context import Context
from tests import servers
from tests.conftest import make_settings
from tests.lineage_scene import UNICODE_SEASON, make_scene, plain_app_data, unicode_app_data
from tests.test_cli_status import run_cli

MODEL_A = {"MODEL_TYPE": "random_forest", "N_ESTIMATORS": "30"}
MODEL_B = {"MODEL_TYPE": "lightgbm", "N_ESTIMATORS": "20"}
TILE = "18SVG"


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lineage-scene")
    return {"source": make_scene(root), "plain": plain_app_data(root), "unicode": unicode_app_data(root)}


class Backend:
    """Environment variables for the CLI plus the equivalent Settings for inspecting results."""

    def __init__(self, name: str, home: Path, extra: dict[str, str]) -> None:
        self.name, self.home = name, home
        self.env = {
            "LANDCOVERPY_HOME": str(home),
            "TMP_DIR": str(home.parent / "tmp"),
            "DASK_N_WORKERS": "1",
            "LEASE_TIMEOUT": "30",
            **extra,
        }

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {k: v for k, v in self.env.items() if k not in ("LANDCOVERPY_HOME", "TMP_DIR")}
        values |= overrides
        return make_settings(self.home.parent, **values)

    def context(self) -> Context:
        return Context.open(self.settings())


def embedded(tmp_path: Path) -> Backend:
    return Backend("embedded", tmp_path / "home", {})


def on_servers(tmp_path: Path, s3: servers.Server, mongo: servers.Server, dask: servers.Server) -> Backend:
    uid = uuid.uuid4().hex[:6]
    return Backend(
        "servers",
        tmp_path / "home",
        {
            "MINIO_HOST": "127.0.0.1",
            "MINIO_PORT": str(s3.port),
            "MINIO_ACCESS_KEY": "testing",
            "MINIO_SECRET_KEY": "testing",
            "MONGO_HOST": "127.0.0.1",
            "MONGO_PORT": str(mongo.port),
            "MONGO_DB": f"lineage_{uid}",
            "DASK_CLUSTER_IP": dask.address,
            "MINIO_BUCKET_NAME_PRODUCTS": f"products-{uid}",
            "MINIO_BUCKET_NAME_COMPOSITES": f"composites-{uid}",
            "MINIO_BUCKET_DATASETS": f"datasets-{uid}",
            "MINIO_BUCKET_MODELS": f"models-{uid}",
            "MINIO_BUCKET_CLASSIFICATIONS": f"classification-maps-{uid}",
        },
    )


def make_backend(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    if kind == "embedded":
        return embedded(tmp_path)
    return on_servers(
        tmp_path,
        request.getfixturevalue("s3_server"),
        request.getfixturevalue("mongo_server"),
        request.getfixturevalue("dask_scheduler"),
    )


@pytest.fixture(params=["embedded", "servers"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request.param, tmp_path, request)


def input_args(scene: dict[str, Path], data: str) -> list[str]:
    """The input-file options of a command, from one of the scene's input folders."""
    folder = scene[data]
    return [
        "--dataset",
        str(folder / "dataset.csv"),
        "--seasons",
        str(folder / "seasons.json"),
        "--lc-labels",
        str(folder / "lc_labels.json"),
        "--sl-labels",
        str(folder / "sl_labels.json"),
    ]


def run_args(scene: dict[str, Path], data: str, out: Path | None, *extra: str) -> list[str]:
    args = [
        "run",
        "--provider",
        "local",
        "--source",
        str(scene["source"]),
        "--no-progress",
        *input_args(scene, data),
        *extra,
    ]
    return args + (["--output-dir", str(out)] if out is not None else [])


def run(
    backend: Backend, scene: dict[str, Path], out: Path, data: str = "plain", **settings: str
) -> subprocess.CompletedProcess[str]:
    res = run_cli(run_args(scene, data, out), backend.env | settings, out.parent, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def exported(out: Path) -> dict[str, np.ndarray]:
    maps = {}
    for name in ("classification", "sl_classification", "confidence"):
        with rasterio.open(out / f"{name}_{TILE}.tif") as src:
            maps[name] = src.read(1)
    return maps


def run_json(out: Path) -> dict[str, Any]:
    return json.loads((out / "run.json").read_text())


def stage(res: subprocess.CompletedProcess[str], name: str) -> str:
    return next(line for line in res.stdout.splitlines() if line.startswith(name))


@dataclass
class ABA:
    """Model A, then model B, then model A again, on one store and catalog (run once per backend
    and shared by the tests that read what those runs left)."""

    backend: Backend
    root: Path
    first: subprocess.CompletedProcess[str]
    third: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module", params=["embedded", "servers"])
def aba(request: pytest.FixtureRequest, scene: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> ABA:
    root = tmp_path_factory.mktemp(f"aba-{request.param}")
    backend = make_backend(request.param, root, request)
    first = run(backend, scene, root / "a1", **MODEL_A)
    run(backend, scene, root / "b", **MODEL_B)
    third = run(backend, scene, root / "a2", **MODEL_A)
    return ABA(backend, root, first, third)


def test_model_a_b_a_reuses_a_and_exports_its_own_maps(aba: ABA) -> None:
    backend, tmp_path = aba.backend, aba.root
    assert "done" in stage(aba.first, "classify")
    assert "reused" in stage(aba.third, "classify") and "reused" in stage(aba.third, "train")

    a1, b, a2 = run_json(tmp_path / "a1"), run_json(tmp_path / "b"), run_json(tmp_path / "a2")
    assert a1["maps"][TILE]["_id"] == a2["maps"][TILE]["_id"] != b["maps"][TILE]["_id"]
    assert a1["hierarchy"] == a2["hierarchy"] != b["hierarchy"]
    maps_a1, maps_b, maps_a2 = exported(tmp_path / "a1"), exported(tmp_path / "b"), exported(tmp_path / "a2")
    for name in maps_a1:  # the third run exports A's map, not whatever was written last
        np.testing.assert_array_equal(maps_a2[name], maps_a1[name], err_msg=name)
        assert (tmp_path / "a2" / f"{name}_{TILE}.tif").read_bytes() == (
            tmp_path / "a1" / f"{name}_{TILE}.tif"
        ).read_bytes()
    assert (maps_b["classification"] != maps_a1["classification"]).any()  # B's map really is another map

    ctx = backend.context()
    records = {r["_id"]: r for r in ctx.catalog.find("maps", {"tile": TILE})}
    assert set(records) == {a1["maps"][TILE]["_id"], b["maps"][TILE]["_id"]}
    keys_a = {loc["key"] for loc in records[a1["maps"][TILE]["_id"]]["outputs"].values()}
    keys_b = {loc["key"] for loc in records[b["maps"][TILE]["_id"]]["outputs"].values()}
    assert not keys_a & keys_b  # B's maps are other objects
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    for rec in records.values():  # every object recorded is in the store, under its map id
        for loc in rec["outputs"].values():
            assert rec["_id"] in loc["key"] and ctx.store.exists(bucket, loc["key"])
            assert ctx.store.size(bucket, loc["key"]) == loc["size"]
    # the latest alias shows the map of the last run (A), and says so
    alias = ctx.store.get_json(bucket, f"latest/{TILE}/map.json")
    assert alias["map_id"] == a1["maps"][TILE]["_id"]
    assert (
        ctx.store.get_bytes(bucket, f"latest/{TILE}/classification.tif")
        == (tmp_path / "a1" / f"classification_{TILE}.tif").read_bytes()
    )
    assert not ctx.store.list(bucket, "blocks/")  # finished blocks were cleaned up


def test_prune_keeps_the_most_recently_used_maps(aba: ABA) -> None:
    backend, tmp_path = aba.backend, aba.root
    a1, b = run_json(tmp_path / "a1"), run_json(tmp_path / "b")
    ctx = backend.context()
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    records = {r["_id"]: r for r in ctx.catalog.find("maps", {"tile": TILE})}
    keys_a = {loc["key"] for loc in records[a1["maps"][TILE]["_id"]]["outputs"].values()}
    keys_b = {loc["key"] for loc in records[b["maps"][TILE]["_id"]]["outputs"].values()}
    # prune keeps the most recently used map per tile: a dry run lists B, then B goes
    dry = run_cli(["prune", "--keep", "1", "--dry-run"], backend.env, tmp_path)
    assert dry.returncode == 0 and b["maps"][TILE]["_id"] in dry.stdout and "would remove 1 map" in dry.stdout
    assert all(ctx.store.exists(bucket, k) for k in keys_b)
    pruned = run_cli(["prune", "--keep", "1"], backend.env, tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert not any(ctx.store.exists(bucket, k) for k in keys_b)
    assert all(ctx.store.exists(bucket, k) for k in keys_a)
    assert [r["_id"] for r in ctx.catalog.find("maps", {"tile": TILE})] == [a1["maps"][TILE]["_id"]]


@pytest.mark.parametrize("aba", ["embedded"], indirect=True)
def test_non_default_mask_settings_run_and_never_mix(aba: ABA, scene: dict[str, Path], tmp_path: Path) -> None:
    backend = embedded(tmp_path)
    shutil.copytree(aba.backend.home, backend.home)  # the catalog and store after default-mask runs
    masked = {"MASK_DILATION_PIXELS": "2", "CLOUD_PROBABILITY_THRESHOLD": "0.5", **MODEL_A}
    run(backend, scene, tmp_path / "masked", **masked)
    default, other = run_json(aba.root / "a1"), run_json(tmp_path / "masked")
    ctx = backend.context()

    def mask_of(composite_id: str) -> dict[str, Any]:
        rec = ctx.catalog.get("composites", composite_id)
        assert rec is not None
        return rec["params"]["mask"]

    for cid in other["maps"][TILE]["composites"]:
        assert mask_of(cid)["dilation_pixels"] == 2 and mask_of(cid)["cloud_probability_threshold"] == 0.5
    for cid in default["maps"][TILE]["composites"]:
        assert mask_of(cid)["dilation_pixels"] == 0 and mask_of(cid)["cloud_probability_threshold"] == 0.4
    assert not set(other["maps"][TILE]["composites"]) & set(default["maps"][TILE]["composites"])
    dataset = ctx.catalog.get("datasets", other["dataset"])
    assert dataset is not None and set(dataset["composites"]) == set(other["maps"][TILE]["composites"])
    # the separate commands find the same composites under the same settings
    folder = scene["plain"]
    files = [
        "--dataset",
        str(folder / "dataset.csv"),
        "--seasons",
        str(folder / "seasons.json"),
        "--lc-labels",
        str(folder / "lc_labels.json"),
        "--sl-labels",
        str(folder / "sl_labels.json"),
    ]
    res = run_cli(["dataset", *files], backend.env | masked, tmp_path)
    assert res.returncode == 0 and f"{other['dataset']}:" in res.stdout and "(reused)" in res.stdout, res.stderr
    res = run_cli(["classify", "--no-progress", *files], backend.env | masked, tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"{TILE}: reused" in res.stdout
    # the default model classifies from default composites even when the settings say otherwise
    before, n_maps = ctx.catalog.get("maps", default["maps"][TILE]["_id"])["last_used"], ctx.catalog.count("maps")
    res = run_cli(
        ["classify", "--no-progress", "--model", default["hierarchy"], *files], backend.env | masked, tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert f"{TILE}: reused;" in res.stdout, res.stdout  # the default run's own map, not a new one
    assert ctx.catalog.count("maps") == n_maps
    assert ctx.catalog.get("maps", default["maps"][TILE]["_id"])["last_used"] > before


def test_any_label_name_works_and_stays_intact(
    scene: dict[str, Path],
    tmp_path: Path,
    s3_server: servers.Server,
    mongo_server: servers.Server,
    dask_scheduler: servers.Server,
) -> None:
    from PIL import Image

    backend = on_servers(tmp_path, s3_server, mongo_server, dask_scheduler)
    out = tmp_path / "out"
    run(backend, scene, out, data="unicode", **MODEL_A)
    ctx = backend.context()
    hierarchy = ctx.catalog.get("models", run_json(out)["hierarchy"])
    assert hierarchy is not None
    values = hierarchy["category_values"]
    assert values == {"water": 1, "crops/annual": 2, "crops annual": 3, "森林": 4}
    subs = hierarchy["subcategory_models"]
    assert set(subs) == {"2", "3"} and subs["2"] != subs["3"]  # two categories, two models
    members = [ctx.catalog.get("models", subs[v]) for v in ("2", "3")]
    assert members[0]["category"] == "crops/annual" and members[1]["category"] == "crops annual"
    assert members[0]["key"] != members[1]["key"]
    assert set(members[0]["classes"]) == {"été", "Été"} and set(members[1]["classes"]) == {"sol nu", "Sol nu"}
    for member in members:
        assert ctx.store.exists(member["bucket"], member["key"])
    # names intact in the COG tags, the legends and the report
    with rasterio.open(out / f"classification_{TILE}.tif") as src:
        tags = src.tags()
    assert [tags[f"class_{v}"] for v in (1, 2, 3, 4)] == ["water", "crops/annual", "crops annual", "森林"]
    assert json.loads(tags["classes"]) == {"1": "water", "2": "crops/annual", "3": "crops annual", "4": "森林"}
    with rasterio.open(out / f"sl_classification_{TILE}.tif") as src:
        sl_tags = src.tags()
    assert {sl_tags[f"class_{v}"] for v in (3, 4, 5, 6)} == {"été", "Été", "sol nu", "Sol nu"}
    legend = json.loads(Image.open(out / f"classification_{TILE}.png").text["Legend"])
    assert {entry["name"] for entry in legend} <= {"water", "crops/annual", "crops annual", "森林"}
    assert len(legend) >= 3
    sl_legend = {e["name"] for e in json.loads(Image.open(out / f"sl_classification_{TILE}.png").text["Legend"])}
    assert {"été", "Été"} <= sl_legend
    # QGIS default styles and GDAL category names beside the maps, names intact
    from landcoverpy.styles import read_category_names, read_paletted_qml

    palette = read_paletted_qml((out / f"classification_{TILE}.qml").read_text(encoding="utf-8"))
    assert {v: label for v, (label, _) in palette.items()} == {
        1: "water",
        2: "crops/annual",
        3: "crops annual",
        4: "森林",
    }
    assert all(colour.startswith("#") and len(colour) == 7 for _, colour in palette.values())
    names = read_category_names((out / f"classification_{TILE}.tif.aux.xml").read_text(encoding="utf-8"))
    assert names[1:5] == ["water", "crops/annual", "crops annual", "森林"]
    sl_palette = read_paletted_qml((out / f"sl_classification_{TILE}.qml").read_text(encoding="utf-8"))
    assert {label for label, _ in sl_palette.values()} >= {"été", "Été", "sol nu", "Sol nu", "not classified"}
    assert 'type="singlebandpseudocolor"' in (out / f"confidence_{TILE}.qml").read_text()
    with rasterio.open(out / f"confidence_{TILE}.tif") as src:
        assert src.units == ("%",)
    report = (out / "report.md").read_text(encoding="utf-8")
    for name in ("crops/annual", "crops annual", "森林"):
        assert name in report
    # the season name is kept in the composite record and readable in its key (slug + digest)
    comp = ctx.catalog.find("composites")[0]
    assert comp["season"] == UNICODE_SEASON and "/n-" in comp["bands"]["B02"]["key"]


def test_bad_label_names_are_refused_before_any_work(tmp_path: Path) -> None:
    from landcoverpy.errors import InputValidationError
    from landcoverpy.inputs import load_labels, load_seasons

    (tmp_path / "lc.json").write_text('{"crops annual": 1, "crops  annual": 2}')
    with pytest.raises(InputValidationError, match=r"keys 'crops annual' and 'crops  annual' are the same name"):
        load_labels(tmp_path / "lc.json", "category")
    (tmp_path / "lc2.json").write_text(json.dumps({"\u00e9t\u00e9": 1, "e\u0301te\u0301": 2}))  # NFC vs NFD
    with pytest.raises(InputValidationError, match="same name once Unicode"):
        load_labels(tmp_path / "lc2.json", "category")
    (tmp_path / "s.json").write_text('{" ": ["2020-01-01", "2020-02-01"]}')
    with pytest.raises(InputValidationError, match="s.json: a season has an empty name"):
        load_seasons(tmp_path / "s.json")
    (tmp_path / "ok.json").write_text(json.dumps({"Forest": 1, "forest": 2, "crops/annual": 3, "crops annual": 4}))
    assert load_labels(tmp_path / "ok.json", "category").values == {
        "Forest": 1,
        "forest": 2,
        "crops/annual": 3,
        "crops annual": 4,
    }


def _wait_for_lease(backend: Backend, deadline_s: float = 120) -> dict[str, Any]:
    ctx = backend.context()
    deadline = time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline:
            doc = ctx.catalog.get("leases", "workflow")
            if doc is not None:
                return doc
            time.sleep(0.1)
    finally:
        ctx.close()
    raise AssertionError("the first run never took the lease")


def _popen(args: list[str], backend: Backend, cwd: Path, **settings: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "MONGO_", "DASK_", "LANDCOVERPY_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "landcoverpy.cli", *args],
        env=clean | backend.env | settings,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


# the lease on the embedded catalog in the slow pass; its servers twin stays in the default suite
@pytest.mark.parametrize("aba", [pytest.param("embedded", marks=pytest.mark.slow), "servers"], indirect=True)
def test_two_runs_are_serialised_by_the_lease(
    aba: ABA, scene: dict[str, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    backend = make_backend(aba.backend.name, tmp_path, request)  # a fresh store and catalog
    patient = MODEL_A | {"LEASE_TIMEOUT": "300"}  # the pause below never looks like a dead holder
    first = _popen(run_args(scene, "plain", tmp_path / "first"), backend, tmp_path, **patient)
    holder = _wait_for_lease(backend)
    assert holder["pid"] == first.pid
    time.sleep(1.0)
    # the first run is paused while the second starts, so that it still holds the lease whatever
    # the machine's load (paused for less than LEASE_TIMEOUT: its lease stays valid)
    os.killpg(first.pid, signal.SIGSTOP)
    try:
        second = run_cli(run_args(scene, "plain", tmp_path / "second"), backend.env | patient, tmp_path, timeout=120)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert second.returncode == 1, second.stderr[-2000:]  # refused at once, not after waiting
    assert first.poll() is None
    assert "another run is using this catalog" in second.stderr and f"pid {first.pid}" in second.stderr
    assert "landcoverpy run" in second.stderr and "Traceback" not in second.stderr
    waiting = _popen(run_args(scene, "plain", tmp_path / "waited", "--wait"), backend, tmp_path, **MODEL_A)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    w_out, w_err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, w_err[-3000:]
    assert "Nothing to do" in w_out  # it waited, then reused everything the first run made
    np.testing.assert_array_equal(
        exported(tmp_path / "waited")["classification"], exported(tmp_path / "first")["classification"]
    )
    # the first run's outputs equal a lone run's (model A's first run of the A-B-A fixture)
    for name, arr in exported(aba.root / "a1").items():
        np.testing.assert_array_equal(exported(tmp_path / "first")[name], arr, err_msg=name)
    ctx = backend.context()
    assert ctx.catalog.get("leases", "workflow") is None  # released


@pytest.mark.parametrize("backend", [pytest.param("embedded", marks=pytest.mark.slow), "servers"], indirect=True)
def test_a_killed_holder_is_taken_over(backend: Backend, scene: dict[str, Path], tmp_path: Path) -> None:
    victim = _popen(run_args(scene, "plain", tmp_path / "victim"), backend, tmp_path, **MODEL_A)
    _wait_for_lease(backend)
    time.sleep(2.0)  # let it start writing
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    ctx = backend.context()
    assert ctx.catalog.get("leases", "workflow") is not None  # the dead run's lease is still there
    res = run(backend, scene, tmp_path / "after", **MODEL_A)
    assert "took over the catalog lease" in res.stderr
    assert ctx.catalog.count("maps", {"tile": TILE}) == 1
    assert ctx.catalog.get("leases", "workflow") is None


def test_stac_items_load_with_odc_stac(aba: ABA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import odc.stac
    import pystac
    import rioxarray

    backend, out = aba.backend, aba.root / "a2"
    ctx = backend.context()
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    published = json.loads(ctx.store.get_bytes(bucket, "stac/catalog.json"))
    assert {link["href"] for link in published["links"] if link["rel"] == "child"} >= {
        "./maps/collection.json",
        "./composites/collection.json",
    }
    assert (out / "stac" / "catalog.json").is_file()  # the run's output folder has it too
    if backend.name == "servers":  # GDAL reads s3:// hrefs from the same endpoint
        for key, value in {
            "AWS_S3_ENDPOINT": backend.env["MINIO_HOST"] + ":" + backend.env["MINIO_PORT"],
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_HTTPS": "NO",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
    exp = run_cli(["stac", "export", "--output", str(tmp_path / "stac")], backend.env, tmp_path)
    assert exp.returncode == 0, exp.stderr
    catalog = pystac.Catalog.from_file(str(tmp_path / "stac" / "catalog.json"))
    items = {item.id: item for item in catalog.get_items(recursive=True)}
    map_item = items[run_json(out)["maps"][TILE]["_id"]]
    assert map_item.properties["proj:code"] == "EPSG:32618"
    assert run_json(out)["hierarchy"] in map_item.properties["landcoverpy:inputs"]
    assert any(link.rel == "derived_from" for link in map_item.links)
    classes = map_item.assets["classification"].extra_fields["classification:classes"]
    assert [c["title"] for c in classes] == ["water", "vegetation", "bare", "built_up"]
    loaded = odc.stac.load([map_item], bands=["classification"]).classification.isel(time=0).values
    np.testing.assert_array_equal(loaded, exported(out)["classification"])
    record = ctx.catalog.get("maps", map_item.id)
    assert map_item.assets["classification"].extra_fields["file:size"] == record["outputs"]["classification"]["size"]

    comp_item = next(item for item in items.values() if item.id.startswith("composite-"))
    band = comp_item.assets["B04"].extra_fields["raster:bands"][0]
    assert band["scale"] == pytest.approx(1e-4) and band["nodata"] == 0
    raw = odc.stac.load([comp_item], bands=["B04"]).B04.isel(time=0).values
    reflectance = np.where(raw == band["nodata"], np.nan, raw * band["scale"] + band["offset"])
    assert 0.0 < np.nanmedian(reflectance) < 0.5  # reflectance, not DN
    # GDAL carries the same scale: readers that apply it (rioxarray, QGIS) see reflectance
    with rasterio.Env(), rasterio.open(comp_item.assets["B04"].href) as src:
        assert src.scales == (pytest.approx(1e-4),)
    gdal_scaled = rioxarray.open_rasterio(comp_item.assets["B04"].href, mask_and_scale=True).isel(band=0).values
    np.testing.assert_allclose(gdal_scaled, reflectance, rtol=1e-6, equal_nan=True)

    # a portable copy: assets beside their Items, relative hrefs
    exp = run_cli(["stac", "export", "--output", str(tmp_path / "copy"), "--copy-assets"], backend.env, tmp_path)
    assert exp.returncode == 0, exp.stderr
    moved = shutil.move(str(tmp_path / "copy"), str(tmp_path / "moved"))
    copied = {i.id: i for i in pystac.Catalog.from_file(str(Path(moved) / "catalog.json")).get_items(recursive=True)}
    again = odc.stac.load([copied[map_item.id]], bands=["classification"]).classification.isel(time=0).values
    np.testing.assert_array_equal(again, loaded)
