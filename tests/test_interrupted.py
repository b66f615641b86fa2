"""Interrupted runs lose nothing and leave nothing: a composite killed with SIGKILL leaves no
scratch behind after the next run, which resumes without redoing complete layers and gives the
same composite as an undisturbed run; a worker killed mid-composite changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from landcoverpy.context import Context
from tests import servers
from tests.conftest import make_settings
from tests.lineage_scene import make_scene, plain_app_data
from tests.test_cli_status import run_cli

WINDOW = "128"  # many windows per band: the kill lands mid-composite


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("interrupted-scene")
    return {"source": make_scene(root), "plain": plain_app_data(root)}


def args(scene: dict[str, Path], command: str) -> list[str]:
    folder = scene["plain"]
    return [
        command,
        "--no-progress",
        "--dataset",
        str(folder / "dataset.csv"),
        "--seasons",
        str(folder / "seasons.json"),
        "--lc-labels",
        str(folder / "lc_labels.json"),
        "--sl-labels",
        str(folder / "sl_labels.json"),
    ]


def env_for(root: Path, **extra: str) -> dict[str, str]:
    return {
        "LANDCOVERPY_HOME": str(root / "home"),
        "TMP_DIR": str(root / "tmp"),
        "DASK_N_WORKERS": "1",
        "COMPOSITE_WINDOW_SIZE": WINDOW,
        **extra,
    }


def acquire(scene: dict[str, Path], root: Path, **extra: str) -> None:
    res = run_cli(
        [*args(scene, "acquire"), "--provider", "local", "--source", str(scene["source"])],
        env_for(root, **extra),
        root,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]


def layer_files(root: Path) -> dict[str, Path]:
    return {
        p.name[: -len(".done.json")]: p.with_name(p.name[: -len(".done.json")] + ".tif")
        for p in (root / "home" / "store" / "composites").rglob("*.done.json")
    }


def composite_layers(root: Path, **extra: str) -> dict[str, str]:
    ctx = Context.open(make_settings(root, LANDCOVERPY_HOME=root / "home", **extra))
    [rec] = ctx.catalog.find("composites")
    return {
        name: loc["sha256"]
        for name, loc in (rec["bands"] | rec["indices"] | {"valid_count": rec["valid_count"]}).items()
    }


@pytest.fixture(scope="module")
def undisturbed(scene: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("undisturbed")
    acquire(scene, root)
    res = run_cli(args(scene, "composite"), env_for(root), root, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return composite_layers(root)


def test_killed_composite_leaves_no_scratch_and_resumes(
    scene: dict[str, Path], tmp_path: Path, undisturbed: dict[str, str]
) -> None:
    acquire(scene, tmp_path)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "MONGO_", "DASK_", "LANDCOVERPY_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "landcoverpy.cli", *args(scene, "composite")],
        env=clean | env_for(tmp_path),
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(layer_files(tmp_path)) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = layer_files(tmp_path)
    assert 3 <= len(done) < len(undisturbed), f"expected a partial composite, found {sorted(done)}"
    ctx = Context.open(make_settings(tmp_path, LANDCOVERPY_HOME=tmp_path / "home"))
    assert ctx.catalog.count("composites") == 0  # nothing half-made is catalogued
    before = {name: path.stat().st_mtime_ns for name, path in done.items()}

    resumed = run_cli(args(scene, "composite"), env_for(tmp_path), tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "were already complete (resumed)" in resumed.stderr
    assert not list((tmp_path / "tmp").glob("lcp-*")), "scratch of the killed run survived"
    for name, mtime in before.items():  # complete layers were not redone
        assert layer_files(tmp_path)[name].stat().st_mtime_ns == mtime, name
    assert composite_layers(tmp_path) == undisturbed  # byte-identical layers


@pytest.mark.slow  # in `make test`'s second pass, not the default suite's 15-minute budget
def test_worker_killed_mid_composite_changes_nothing(
    scene: dict[str, Path], tmp_path: Path, server_logs: Path, undisturbed: dict[str, str]
) -> None:
    acquire(scene, tmp_path)
    with servers.dask_cluster(server_logs, n_workers=2) as sched:
        victim = sched.extra["workers"][0]
        killed = threading.Event()

        def killer() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if len(layer_files(tmp_path)) >= 2:
                    os.killpg(victim.pid, signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.05)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        res = run_cli(args(scene, "composite"), env_for(tmp_path, DASK_CLUSTER_IP=sched.address), tmp_path, timeout=600)
        thread.join(timeout=5)
    assert killed.is_set(), "the worker was not killed while layers were being made"
    assert res.returncode == 0, res.stderr[-2000:]
    assert composite_layers(tmp_path) == undisturbed


def test_scratch_of_dead_processes_is_swept(tmp_path: Path) -> None:
    from landcoverpy.scratch import PREFIX, _host, scratch_dir, sweep_stale

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{PREFIX}-{_host()}-{dead.pid}-abc"
    (stale / "part").mkdir(parents=True)
    (stale / "part" / "big.tif").write_bytes(b"x" * 1024)
    alive = tmp_path / f"{PREFIX}-{_host()}-{os.getpid()}-def"
    alive.mkdir()
    other_host = tmp_path / f"{PREFIX}-elsewhere-{dead.pid}-ghi"
    other_host.mkdir()
    with scratch_dir(tmp_path) as mine:
        assert mine.is_dir() and not stale.exists()
        assert alive.exists() and other_host.exists()  # live processes and other hosts are left alone
    assert not mine.exists()
    assert sweep_stale(tmp_path) == 0
