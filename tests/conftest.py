"""Shared fixtures: real servers as separate processes, settings for each backend, real data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from landcoverpy.config import Settings
from landcoverpy.pipeline.cluster import disable_worker_profiler
from tests import servers

disable_worker_profiler()  # every in-process cluster and every `dask worker` process of the tests

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real test data {path} is absent (expected ../shared/data/{name} beside the repo)")
    return path


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def s3_server(server_logs: Path) -> Iterator[servers.Server]:
    with servers.moto_server(server_logs) as server:
        yield server


@pytest.fixture(scope="session")
def mongo_server(server_logs: Path) -> Iterator[servers.Server]:
    with servers.mongo_server(server_logs) as server:
        yield server


@pytest.fixture(scope="session")
def dask_scheduler(server_logs: Path) -> Iterator[servers.Server]:
    with servers.dask_cluster(server_logs, n_workers=2) as server:
        yield server


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """An in-process Dask cluster (threads) for stage tests that are not about Dask itself."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def process_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app's own local Dask cluster, of worker processes: tasks, providers and their arguments
    are pickled to another process, as on every real cluster (and the workers get the app's
    allocator settings, none of which leaks into this process)."""
    from landcoverpy.pipeline.cluster import dask_client

    settings = make_settings(tmp_path_factory.mktemp("process-cluster"), DASK_N_WORKERS=1)
    with dask_client(settings, processes=True) as c:
        yield c


@pytest.fixture()
def s3_env(s3_server: servers.Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """GDAL/rasterio environment for reading s3:// objects from moto."""
    env = {
        "AWS_S3_ENDPOINT": s3_server.address,
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_HTTPS": "NO",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "LANDCOVERPY_HOME": tmp_path / "home",
        "TMP_DIR": tmp_path / "tmp",
        "MINIO_HOST": None,
        "MONGO_HOST": None,
        "DASK_CLUSTER_IP": None,
        "CONNECT_TIMEOUT": 3.0,
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@pytest.fixture()
def local_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture()
def server_settings(tmp_path: Path, s3_server: servers.Server, mongo_server: servers.Server) -> Settings:
    """Settings pointing at moto_server + secantusd, with a database and buckets unique to the test."""
    uid = uuid.uuid4().hex[:8]
    buckets = {name: f"{value}-{uid}" for name, value in _bucket_fields().items()}
    return make_settings(
        tmp_path,
        **buckets,
        MINIO_HOST="127.0.0.1",
        MINIO_PORT=s3_server.port,
        MINIO_ACCESS_KEY="testing",
        MINIO_SECRET_KEY="testing",
        MONGO_HOST="127.0.0.1",
        MONGO_PORT=mongo_server.port,
        MONGO_DB=f"test_{uid}",
    )


def _bucket_fields() -> dict[str, str]:
    return {
        name: str(field.default) for name, field in Settings.model_fields.items() if name.startswith("MINIO_BUCKET_")
    }
