"""Runs ride out outages of S3 and MongoDB (tests/faultproxy.py between the CLI and each server):
20-second outages at every stage of `run` leave the maps pixel-identical to an undisturbed run's;
an outage longer than OUTAGE_TOLERANCE ends the run with one line and exit status 3 within
OUTAGE_TOLERANCE + 30 s, and a rerun completes with the same maps. The console never shows a
traceback, Dask's "Compute Failed" dump or a distributed ERROR line.

The workflow runs on the lineage scene (a cut of the demo's real scene), a local cluster of
process workers, moto_server and secantusd."""

from __future__ import annotations

import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests import servers
from tests.lineage_scene import make_scene, plain_app_data
from tests.test_cli_status import run_cli
from tests.test_lineage import exported, run_args

OUTAGE = 20.0  # seconds: a MinIO restart, a MongoDB election (10-12 s) with margin

pytestmark = pytest.mark.slow


def mongo_write(collection: str) -> bytes:
    """The bytes of a MongoDB ``update`` command on ``collection`` (replace_one, upsert): BSON
    string element ``update`` whose value is the collection's name."""
    name = collection.encode() + b"\x00"
    return b"\x02update\x00" + struct.pack("<i", len(name)) + name


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outage-scene")
    return {"source": make_scene(root), "plain": plain_app_data(root)}


def environment(root: Path, s3_port: int, mongo_port: int, **extra: str) -> dict[str, str]:
    uid = uuid.uuid4().hex[:6]
    return {
        "LANDCOVERPY_HOME": str(root / "home"),
        "TMP_DIR": str(root / "tmp"),
        "DASK_N_WORKERS": "1",
        "MINIO_HOST": "127.0.0.1",
        "MINIO_PORT": str(s3_port),
        "MINIO_ACCESS_KEY": "testing",
        "MINIO_SECRET_KEY": "testing",
        "MONGO_HOST": "127.0.0.1",
        "MONGO_PORT": str(mongo_port),
        "MONGO_DB": f"outage_{uid}",
        "MINIO_BUCKET_NAME_PRODUCTS": f"products-{uid}",
        "MINIO_BUCKET_NAME_COMPOSITES": f"composites-{uid}",
        "MINIO_BUCKET_DATASETS": f"datasets-{uid}",
        "MINIO_BUCKET_MODELS": f"models-{uid}",
        "MINIO_BUCKET_CLASSIFICATIONS": f"classification-maps-{uid}",
        **extra,
    }


def s3_put(env: dict[str, str], bucket: str, prefix: str = "") -> bytes:
    return f"PUT /{env[bucket]}/{prefix}".encode()


def stage_triggers(service: str, env: dict[str, str]) -> list[tuple[str, bytes]]:
    """One pattern per stage of `run`, in the order the stages send them."""
    if service == "s3":
        return [
            ("acquire", s3_put(env, "MINIO_BUCKET_NAME_PRODUCTS")),
            ("composite", s3_put(env, "MINIO_BUCKET_NAME_COMPOSITES")),
            ("dataset", s3_put(env, "MINIO_BUCKET_DATASETS")),
            ("train", s3_put(env, "MINIO_BUCKET_MODELS")),
            ("classify", s3_put(env, "MINIO_BUCKET_CLASSIFICATIONS", "blocks/")),
            ("publish", s3_put(env, "MINIO_BUCKET_CLASSIFICATIONS", "reports/")),
        ]
    return [
        ("acquire", mongo_write("products")),
        ("composite", mongo_write("composites")),
        ("dataset", mongo_write("datasets")),
        ("train", mongo_write("models")),
        ("classify", mongo_write("maps")),
        ("publish", mongo_write("runs")),
    ]


def check_console(res: subprocess.CompletedProcess[str]) -> None:
    text = res.stdout + res.stderr
    assert "Traceback" not in text, text[-4000:]
    assert "Compute Failed" not in text, text[-4000:]
    noisy = [line for line in text.splitlines() if "distributed" in line and "ERROR" in line]
    assert not noisy, noisy


@pytest.fixture(scope="module")
def proxies(
    s3_server: servers.Server, mongo_server: servers.Server, server_logs: Path
) -> Iterator[dict[str, servers.FaultProxy]]:
    with (
        servers.fault_proxy(s3_server.port, server_logs) as s3,
        servers.fault_proxy(mongo_server.port, server_logs) as mongo,
    ):
        yield {"s3": s3, "mongo": mongo}


@pytest.fixture(scope="module")
def undisturbed(
    scene: dict[str, Path],
    s3_server: servers.Server,
    mongo_server: servers.Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, np.ndarray]:
    """The maps of a run straight on the servers, no proxy."""
    root = tmp_path_factory.mktemp("undisturbed")
    env = environment(root, s3_server.port, mongo_server.port)
    res = run_cli(run_args(scene, "plain", root / "out"), env, root, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return exported(root / "out")


def wait_until_up(proxy: servers.FaultProxy, deadline: float = 180.0) -> None:
    until = time.monotonic() + deadline
    while proxy.status()["down"]:
        assert time.monotonic() < until, "the proxy never came back"
        time.sleep(0.5)


@pytest.mark.parametrize("service", ["s3", "mongo"])
def test_outages_at_every_stage_are_ridden_out(
    service: str,
    scene: dict[str, Path],
    proxies: dict[str, servers.FaultProxy],
    undisturbed: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    proxy = proxies[service]
    wait_until_up(proxy)
    env = environment(tmp_path, proxies["s3"].port, proxies["mongo"].port)
    triggers = stage_triggers(service, env)
    fired_before = len(proxy.status()["fired"])  # type: ignore[arg-type]
    for _, pattern in triggers:
        proxy.arm(pattern, OUTAGE)
    res = run_cli(run_args(scene, "plain", tmp_path / "out"), env, tmp_path, timeout=900)
    status = proxy.status()
    fired = status["fired"][fired_before:]  # type: ignore[index]
    assert res.returncode == 0, res.stderr[-4000:]
    assert len(fired) == len(triggers), (status, [name for name, _ in triggers])
    check_console(res)
    maps = exported(tmp_path / "out")
    for name, pixels in undisturbed.items():
        assert np.array_equal(maps[name], pixels), name
    # each outage was seen and ridden out, not dodged
    assert res.stderr.count("retrying for up to") >= len(triggers) // 2, res.stderr[-4000:]


@pytest.mark.parametrize(
    ("service", "stage_pattern", "label"),
    [
        ("s3", lambda env: s3_put(env, "MINIO_BUCKET_NAME_COMPOSITES"), "S3 object store"),
        ("mongo", lambda env: mongo_write("models"), "MongoDB"),
    ],
    ids=["s3", "mongo"],
)
def test_an_outage_past_the_tolerance_stops_with_exit_3_and_a_rerun_completes(
    service: str,
    stage_pattern: object,
    label: str,
    scene: dict[str, Path],
    proxies: dict[str, servers.FaultProxy],
    undisturbed: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    tolerance = 10.0
    proxy = proxies[service]
    wait_until_up(proxy)
    env = environment(tmp_path, proxies["s3"].port, proxies["mongo"].port, OUTAGE_TOLERANCE=str(tolerance))
    proxy.arm(stage_pattern(env), 60.0)  # type: ignore[operator]
    res = run_cli(run_args(scene, "plain", tmp_path / "out"), env, tmp_path, timeout=600)
    ended = time.time()
    fired = proxy.status()["fired"][-1]  # type: ignore[index]
    assert res.returncode == 3, res.stderr[-4000:]
    assert ended - float(fired["at"]) <= tolerance + 30, (ended - float(fired["at"]), res.stderr[-3000:])
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and label in errors[0] and "OUTAGE_TOLERANCE" in errors[0], res.stderr[-3000:]
    check_console(res)

    wait_until_up(proxy)
    rerun = run_cli(
        run_args(scene, "plain", tmp_path / "out2"), env | {"OUTAGE_TOLERANCE": "120"}, tmp_path, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    maps = exported(tmp_path / "out2")
    for name, pixels in undisturbed.items():
        assert np.array_equal(maps[name], pixels), name


def test_a_scheduler_outage_is_ridden_out(
    scene: dict[str, Path],
    s3_server: servers.Server,
    mongo_server: servers.Server,
    dask_scheduler: servers.Server,
    server_logs: Path,
    undisturbed: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    """The client loses its scheduler (the workers keep theirs) in the middle of compositing:
    distributed cancels every future and reconnects; the run waits, then does the stage again,
    reusing what was finished."""
    with servers.fault_proxy(dask_scheduler.port, server_logs) as proxy:
        env = environment(tmp_path, s3_server.port, mongo_server.port, DASK_CLUSTER_IP=f"127.0.0.1:{proxy.port}")
        proxy.arm(b"mask-", OUTAGE)  # the first cloud-mask task the client submits
        res = run_cli(run_args(scene, "plain", tmp_path / "out"), env, tmp_path, timeout=900)
        assert proxy.status()["fired"], res.stderr[-3000:]
    assert res.returncode == 0, res.stderr[-4000:]
    check_console(res)
    assert "lost the connection to Dask scheduler" in res.stderr
    maps = exported(tmp_path / "out")
    for name, pixels in undisturbed.items():
        assert np.array_equal(maps[name], pixels), name


def test_map_products_ride_out_an_s3_outage(
    scene: dict[str, Path], proxies: dict[str, servers.FaultProxy], tmp_path: Path
) -> None:
    """`vectorize` reads the map in place (GDAL over S3): a 20 s outage from its first read of the
    maps bucket is ridden out, the polygons are made, the console stays clean."""
    proxy = proxies["s3"]
    wait_until_up(proxy)
    env = environment(tmp_path, proxies["s3"].port, proxies["mongo"].port)
    res = run_cli(run_args(scene, "plain", None), env, tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    fired_before = len(proxy.status()["fired"])  # type: ignore[arg-type]
    proxy.arm(f"GET /{env['MINIO_BUCKET_CLASSIFICATIONS']}/".encode(), OUTAGE)
    args = ["vectorize", "--level", "category", "--mmu-pixels", "4", "--output-dir", str(tmp_path / "v")]
    res = run_cli(args, env, tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert len(proxy.status()["fired"]) == fired_before + 1  # type: ignore[arg-type]
    check_console(res)
    assert "retrying for up to" in res.stderr, res.stderr[-3000:]
    assert (tmp_path / "v" / "classification_mmu4_18SVG.gpkg").stat().st_size > 0
