"""Block-wise classification on Dask: LocalCluster vs a real scheduler + workers (DASK_CLUSTER_IP),
a worker killed mid-run, a client killed mid-run and resumed; map validity and bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client, LocalCluster

from landcoverpy import records
from landcoverpy.config import Settings
from landcoverpy.context import Context
from landcoverpy.demo import DEMO_TILE, demo_app_data, prepare_demo_source
from landcoverpy.errors import ModelError
from landcoverpy.inputs import load_inputs
from landcoverpy.pipeline.acquire import acquire
from landcoverpy.pipeline.classification import check_features, classify
from landcoverpy.pipeline.cluster import dask_client
from landcoverpy.pipeline.composites import composite
from landcoverpy.pipeline.datasets import build_dataset
from landcoverpy.pipeline.training import model_params, train
from landcoverpy.pipeline.workflow import composite_params
from landcoverpy.raster.cog import validate_cog
from landcoverpy.sources.local import LocalProvider
from tests import servers
from tests.conftest import make_settings

BLOCK = 256


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The demo scene acquired, composited and a model trained (embedded store), once."""
    root = tmp_path_factory.mktemp("prepared")
    settings = make_settings(root, N_ESTIMATORS=40)
    data = demo_app_data()
    inputs = load_inputs(data / "dataset.csv", data / "seasons.json", data / "lc_labels.json", data / "sl_labels.json")
    ctx = Context.open(settings)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        acquire(ctx, LocalProvider(prepare_demo_source(root / "src")), [DEMO_TILE], inputs.seasons, client, False)
        composite(ctx, [DEMO_TILE], inputs.seasons, client, composite_params(settings), False)
        ds = build_dataset(ctx, inputs, client)
    hierarchy, _ = train(ctx, ds.record, inputs.lc_labels, inputs.sl_labels, model_params(settings))
    ctx.close()
    return root, hierarchy


def copy_home(prepared: tuple[Path, dict], dest: Path, **overrides: object) -> Settings:
    shutil.copytree(prepared[0] / "home", dest / "home")
    return make_settings(dest, N_ESTIMATORS=40, **overrides)


def read_maps(ctx: Context, record: records.MapRecord | dict) -> dict[str, np.ndarray]:
    """Every layer of a map, from its typed record or its catalog document."""
    if isinstance(record, dict):
        record = records.from_doc(records.MapRecord, record)
    out = {}
    for name, loc in record.outputs.items():
        with ctx.store.rasterio_env(), rasterio.open(ctx.store.raster_uri(loc.bucket, loc.key)) as src:
            out[name] = src.read(1)
    return out


def run_classify(settings: Settings, hierarchy: dict, block: int = BLOCK) -> dict[str, np.ndarray]:
    ctx = Context.open(settings)
    seasons = load_inputs(
        *(demo_app_data() / f for f in ("dataset.csv", "seasons.json", "lc_labels.json", "sl_labels.json"))
    ).seasons
    with dask_client(settings) as client:
        rep = classify(ctx, [DEMO_TILE], seasons, hierarchy, client, block, progress=False)
    record = rep.tiles[0].record
    assert record is not None, rep.lines()
    maps = read_maps(ctx, record)
    nodata = int((maps["classification"] == 0).sum())
    assert record.nodata_pixels == nodata
    # the summary says how much of the tile has no class (and why), or nothing when all has one
    share = f"{nodata} pixels ({100.0 * nodata / maps['classification'].size:.1f} %) without a class"
    assert (share in rep.lines()[0]) == (nodata > 0), rep.lines()
    return maps


@pytest.fixture(scope="module")
def reference_maps(prepared: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """An uninterrupted run on a LocalCluster with a single worker."""
    settings = copy_home(prepared, tmp_path_factory.mktemp("reference"), DASK_N_WORKERS=1)
    return run_classify(settings, prepared[1])


def test_maps_are_valid_and_consistent(prepared: tuple[Path, dict], reference_maps: dict[str, np.ndarray]) -> None:
    root, hierarchy = prepared
    ctx = Context.open(make_settings(root))
    comps = ctx.catalog.find("composites")
    no_data = None
    for loc in comps[0]["bands"].values():  # a pixel is nodata when any composite band is
        with rasterio.open(ctx.store.raster_uri(loc["bucket"], loc["key"])) as src:
            band_nodata = src.read(1) == 0
        no_data = band_nodata if no_data is None else no_data | band_nodata
    assert no_data is not None and no_data.any()
    cat, sub, conf = reference_maps["classification"], reference_maps["sl_classification"], reference_maps["confidence"]
    lc, sl = hierarchy.lc_labels, hierarchy.sl_labels
    assert set(np.unique(cat)) <= {0, *lc.values()}
    assert set(np.unique(sub)) <= {0, 1, *sl.values()}
    assert conf.max() <= 100
    # nodata exactly where the composites have no data
    np.testing.assert_array_equal(cat == 0, no_data)
    np.testing.assert_array_equal(sub == 0, no_data)
    # every subcategory pixel lies inside its category (the demo's label hierarchy)
    data = demo_app_data()
    inputs = load_inputs(data / "dataset.csv", data / "seasons.json", data / "lc_labels.json", data / "sl_labels.json")
    pairs = inputs.points.frame.drop_duplicates(["category", "subcategory"])
    allowed = {lc[c]: set() for c in lc}
    for c, s in zip(pairs["category"], pairs["subcategory"]):
        allowed[lc[c]].add(sl[s] if s else 1)
    for value in lc.values():
        subs = set(np.unique(sub[cat == value]).tolist())
        assert subs <= allowed[value] | {1}, (value, subs)
    assert len(np.unique(cat)) >= 4  # every category appears somewhere on the scene


@pytest.mark.slow  # in `make test`'s second pass, not the default suite's 15-minute budget
def test_remote_scheduler_gives_identical_maps(
    prepared: tuple[Path, dict], reference_maps: dict[str, np.ndarray], tmp_path: Path, dask_scheduler: servers.Server
) -> None:
    settings = copy_home(prepared, tmp_path, DASK_CLUSTER_IP=dask_scheduler.address)
    maps = run_classify(settings, prepared[1])
    for name, ref in reference_maps.items():
        np.testing.assert_array_equal(maps[name], ref, err_msg=name)


@pytest.mark.slow  # in `make test`'s second pass, not the default suite's 15-minute budget
def test_killing_a_worker_mid_run_still_completes_identically(
    prepared: tuple[Path, dict], tmp_path: Path, server_logs: Path, reference_maps: dict[str, np.ndarray]
) -> None:
    import threading

    with servers.dask_cluster(server_logs, n_workers=2) as sched:
        settings = copy_home(prepared, tmp_path, DASK_CLUSTER_IP=sched.address)
        victim = sched.extra["workers"][0]
        blocks_dir = tmp_path / "home" / "store" / settings.MINIO_BUCKET_CLASSIFICATIONS / "blocks"
        killed = threading.Event()

        def killer() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = list(blocks_dir.rglob("classification/*.npz")) if blocks_dir.exists() else []
                if len(done) >= 5:
                    os.killpg(victim.pid, signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.05)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        maps = run_classify(settings, prepared[1], block=128)
        thread.join(timeout=5)
        assert killed.is_set(), "the worker was not killed while blocks were running"
        assert victim.poll() is not None
    for name, ref in reference_maps.items():
        np.testing.assert_array_equal(maps[name], ref, err_msg=name)


@pytest.mark.slow  # in `make test`'s second pass, not the default suite's 15-minute budget
def test_killed_run_resumes_and_matches(
    prepared: tuple[Path, dict], tmp_path: Path, reference_maps: dict[str, np.ndarray]
) -> None:
    settings = copy_home(prepared, tmp_path, DASK_N_WORKERS=1)
    data = demo_app_data()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "MONGO_", "DASK_"))},
        "LANDCOVERPY_HOME": str(settings.LANDCOVERPY_HOME),
        "TMP_DIR": str(settings.TMP_DIR),
        "DASK_N_WORKERS": "1",
        "N_ESTIMATORS": "40",
    }
    args = [
        sys.executable,
        "-m",
        "landcoverpy.cli",
        "classify",
        "--block-size",
        "128",
        "--no-progress",
        "--dataset",
        str(data / "dataset.csv"),
        "--seasons",
        str(data / "seasons.json"),
        "--lc-labels",
        str(data / "lc_labels.json"),
        "--sl-labels",
        str(data / "sl_labels.json"),
    ]
    blocks_dir = settings.LANDCOVERPY_HOME / "store" / settings.MINIO_BUCKET_CLASSIFICATIONS / "blocks"
    proc = subprocess.Popen(
        args, env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if blocks_dir.exists() and len(list(blocks_dir.rglob("classification/*.npz"))) >= 20:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(list(blocks_dir.rglob("classification/*.npz")))
    assert 0 < kept < 256, f"expected a partial run, found {kept} finished blocks"
    ctx = Context.open(settings)
    assert ctx.catalog.count("maps") == 0  # nothing half-written is catalogued
    resumed = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "already done (resumed)" in resumed.stderr
    rec = ctx.catalog.find("maps")[0]
    maps = read_maps(ctx, rec)
    for name, ref in reference_maps.items():
        np.testing.assert_array_equal(maps[name], ref, err_msg=name)
        assert validate_cog(ctx.store.raster_uri(**{k: rec["outputs"][name][k] for k in ("bucket", "key")}))[0]


def test_missing_feature_columns_are_named() -> None:
    with pytest.raises(
        ModelError, match=r"tile 30SUF: the model needs feature column\(s\) its composites lack: summer_B02"
    ):
        check_features(["winter_B02", "summer_B02"], ["winter_B02"], "30SUF")


def test_tile_without_composites_is_skipped_and_reported(prepared: tuple[Path, dict], tmp_path: Path) -> None:
    settings = copy_home(prepared, tmp_path)
    ctx = Context.open(settings)
    data = demo_app_data()
    seasons = load_inputs(
        data / "dataset.csv", data / "seasons.json", data / "lc_labels.json", data / "sl_labels.json"
    ).seasons
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        rep = classify(ctx, ["30SUF"], seasons, prepared[1], client, BLOCK, progress=False)
    assert rep.tiles[0].skipped == "missing composite 'winter' (no products)"
    assert "30SUF: skipped (missing composite 'winter' (no products))" in rep.lines()


def test_tile_selection(prepared: tuple[Path, dict]) -> None:
    from landcoverpy.errors import InputValidationError
    from landcoverpy.pipeline.workflow import resolve_tiles

    data = demo_app_data()
    inputs = load_inputs(data / "dataset.csv", data / "seasons.json", data / "lc_labels.json", data / "sl_labels.json")
    ctx = Context.open(make_settings(prepared[0]))
    assert resolve_tiles(None, inputs) == ["18SVG"]
    assert resolve_tiles("prediction", inputs) == ["18SVG"]
    assert resolve_tiles("T30SUF, 31SBD", inputs) == ["30SUF", "31SBD"]
    assert resolve_tiles(["all"], inputs, ctx.catalog) == ["18SVG"]
    with pytest.raises(InputValidationError, match="not a Sentinel-2 MGRS tile"):
        resolve_tiles(["30SU"], inputs)
