"""Local Dask workers start with glibc allocator settings that keep windows on the heap (see
WORKER_MALLOC_ENV in pipeline/cluster.py) and their share of the cores for GDAL's threads; a
value the user set in the environment wins."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from landcoverpy.pipeline.cluster import WORKER_MALLOC_ENV, dask_client, worker_environ
from tests.conftest import make_settings


def _malloc_env() -> dict[str, str | None]:
    return {
        k: os.environ.get(k)
        for k in (
            "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_MMAP_MAX_",
            "MALLOC_ARENA_MAX",
            "OMP_NUM_THREADS",
            "GDAL_NUM_THREADS",
        )
    }


def test_local_workers_get_the_allocator_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert int(WORKER_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]) == 32 << 20
    assert worker_environ()["OMP_NUM_THREADS"] is not None  # dask's own entries are kept
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "123456789")  # the user's choice
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("GDAL_NUM_THREADS", raising=False)
    settings = make_settings(tmp_path, DASK_N_WORKERS=1)
    with dask_client(settings) as client:
        (env,) = client.run(_malloc_env).values()
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert env["MALLOC_MMAP_MAX_"] == "0" and env["MALLOC_ARENA_MAX"] == "1"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "123456789"
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["GDAL_NUM_THREADS"] == str(os.cpu_count() or 1)  # one worker: every core
    # the nanny's environment does not stay in this process to override the next cluster's
    assert "GDAL_NUM_THREADS" not in os.environ and os.environ["MALLOC_TRIM_THRESHOLD_"] == "123456789"
    assert "MALLOC_MMAP_THRESHOLD_" not in os.environ
    with dask_client(make_settings(tmp_path, DASK_N_WORKERS=2)) as client:
        envs = list(client.run(_malloc_env).values())
    assert [e["GDAL_NUM_THREADS"] for e in envs] == [str(max(1, (os.cpu_count() or 1) // 2))] * 2
    assert worker_environ(2)["GDAL_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert worker_environ(64)["GDAL_NUM_THREADS"] == "1"
    monkeypatch.setenv("GDAL_NUM_THREADS", "3")  # the user's choice wins
    assert worker_environ(1)["GDAL_NUM_THREADS"] == worker_environ(64)["GDAL_NUM_THREADS"] == "3"


def test_tasks_of_a_kind_reuse_freed_memory_and_another_kind_gets_it_back(tmp_path: Path) -> None:
    """Workers keep what a task freed (no page is mapped and zeroed again for the next task of
    that kind) and hand it back to the OS when a task of another kind starts."""
    from tests.task_helpers import resident, touch_and_free

    with dask_client(make_settings(tmp_path, DASK_N_WORKERS=1)) as client:
        start = client.submit(resident, pure=False).result()
        kept = client.submit(touch_and_free, 400, pure=False).result()
        again = client.submit(touch_and_free, 400, pure=False).result()
        after = client.submit(resident, pure=False).result()
    mib = 1 << 20
    assert kept - start > 350 * mib  # freed, still resident: the heap kept it
    assert abs(again - kept) < 50 * mib  # the second task reused those pages instead of new ones
    assert kept - after > 350 * mib  # another kind of task started: handed back


def test_a_stage_that_ends_leaves_idle_workers_without_its_memory(tmp_path: Path) -> None:
    """What a stage's tasks left on a worker's heap goes back to the OS when the stage returns or
    fails, not only when a task of another kind starts later (the worker may idle for long)."""
    from landcoverpy.pipeline.tasks import releases_workers
    from tests.task_helpers import rss, touch_and_free

    @releases_workers
    def stage(name: str, client: object, fail: bool = False) -> int:
        kept = client.submit(touch_and_free, 400, pure=False).result()  # type: ignore[attr-defined]
        if fail:
            raise ValueError(name)
        return int(kept)

    mib = 1 << 20
    with dask_client(make_settings(tmp_path, DASK_N_WORKERS=1)) as client:
        (start,) = client.run(rss).values()
        kept = stage("ok", client)
        (after,) = client.run(rss).values()  # no task started since: only the stage's end released
        assert kept - start > 350 * mib and kept - after > 350 * mib
        with pytest.raises(ValueError, match="broken"):
            stage("broken", client=client, fail=True)
        (after_failure,) = client.run(rss).values()
        assert kept - after_failure > 350 * mib
        # the next task of the same kind no longer finds the pages: a fresh heap's growth again
        again = client.submit(touch_and_free, 400, pure=False).result()
        assert again - after_failure > 350 * mib


def test_the_image_gives_dask_workers_the_same_allocator_settings_and_the_app_none(tmp_path: Path) -> None:
    """The image's Dask configuration (docker/dask/, copied to /etc/dask/) holds WORKER_MALLOC_ENV,
    and a real `dask worker` reading it (nanny and worker process) runs its tasks with those
    settings; the image's ENV does not set them, so the app's process keeps glibc's defaults."""
    import yaml
    from distributed import Client

    from tests import servers

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "docker" / "dask" / "landcoverpy.yaml").read_text())
    assert config["distributed"]["nanny"]["pre-spawn-environ"] == WORKER_MALLOC_ENV
    dockerfile = (root / "docker" / "Dockerfile").read_text()
    assert "COPY docker/dask/landcoverpy.yaml /etc/dask/" in dockerfile
    assert re.search(r"MALLOC_\w+=", dockerfile) is None  # no ENV sets them for every process
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    assert clean == dict(os.environ), "run the tests without MALLOC_* in the environment"
    with (
        servers.dask_cluster(tmp_path, n_workers=1, worker_env={"DASK_CONFIG": str(root / "docker" / "dask")}) as s,
        Client(s.address, timeout="20s") as client,
    ):
        seen = {k: client.submit(os.getenv, k, pure=False).result() for k in [*WORKER_MALLOC_ENV, "OMP_NUM_THREADS"]}
    assert {k: seen[k] for k in WORKER_MALLOC_ENV} == WORKER_MALLOC_ENV
    assert seen["OMP_NUM_THREADS"] == "1"  # dask's own pre-spawn settings are kept beside ours


def test_a_restarted_worker_leaves_this_process_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nanny restarts a worker that died (memory limit, a crash) and writes its pre-spawn
    environment into this process again: it is put back after that start too."""
    import signal
    import time

    monkeypatch.delenv("GDAL_NUM_THREADS", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    with dask_client(make_settings(tmp_path, DASK_N_WORKERS=1)) as client:
        (before,) = client.run(os.getpid).values()
        os.kill(before, signal.SIGKILL)
        deadline = time.monotonic() + 60
        after = before
        while time.monotonic() < deadline:
            try:
                pids = list(client.run(os.getpid).values())
            except Exception:  # noqa: BLE001 - the dead worker is still listed until the scheduler notices
                pids = []
            if pids and pids[0] != before:
                after = pids[0]
                break
            time.sleep(0.2)
        assert after != before, "the nanny did not restart the killed worker"
        (env,) = client.run(_malloc_env).values()
        assert env["GDAL_NUM_THREADS"] == str(os.cpu_count() or 1)  # the new worker got its environment
        assert "GDAL_NUM_THREADS" not in os.environ and "MALLOC_MMAP_THRESHOLD_" not in os.environ
    with dask_client(make_settings(tmp_path, DASK_N_WORKERS=2)) as client:  # the next cluster gets its own share
        envs = list(client.run(_malloc_env).values())
    assert [e["GDAL_NUM_THREADS"] for e in envs] == [str(max(1, (os.cpu_count() or 1) // 2))] * 2


def test_tasks_know_their_workers_threads(tmp_path: Path) -> None:
    """Libraries with their own thread pools (a forest saved with n_jobs=-1, say) get the worker's
    threads inside a task, not the machine's cores."""
    from landcoverpy.pipeline.tasks import task_threads

    assert task_threads() is None  # not in a worker
    with dask_client(make_settings(tmp_path, DASK_N_WORKERS=1, DASK_THREADS_PER_WORKER=2)) as client:
        assert client.submit(task_threads, pure=False).result() == 2


def test_gdal_threads_in_a_worker_without_the_clusters_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker not started by our local cluster (compose's `dask worker`) has no GDAL_NUM_THREADS:
    each of its tasks gets the cores shared by the worker's threads, not every core each."""
    from distributed import Client, LocalCluster

    from landcoverpy.raster.cog import gdal_threads

    monkeypatch.delenv("GDAL_NUM_THREADS", raising=False)
    assert gdal_threads() == "ALL_CPUS"  # not in a worker: the machine is the process's
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,  # in-process: no network at all
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        assert client.submit(gdal_threads, pure=False).result() == str(max(1, (os.cpu_count() or 1) // 2))
        monkeypatch.setenv("GDAL_NUM_THREADS", "3")  # the operator's choice wins
        assert client.submit(gdal_threads, pure=False).result() == "3"
