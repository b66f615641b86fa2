"""Servers that do not answer, or refuse: every command fails instead of hanging (well within
run_cli's limit, beyond its own start-up measured in the same test), with one line naming the
setting to fix, and no credential reaches any output at any verbosity. How fast it gives up
(a few CONNECT_TIMEOUTs) is not asserted here: on two busy cores a bound of seconds fails for no
reason."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.test_bad_input import inputs
from tests.test_cli_status import run_cli

TIMEOUT = 2.0  # CONNECT_TIMEOUT for the commands: they give up after a few of these
HANG = 45.0  # beyond start-up: no command may wait this long on a dead server (a hang runs into run_cli's 120 s)


@pytest.fixture(scope="module")
def silent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.silent_server(tmp_path_factory.mktemp("silent")) as server:
        yield server


def settings_for(kind: str, port: int) -> tuple[dict[str, str], str]:
    """Environment pointing one server at ``port`` and the setting the message must name."""
    if kind == "s3":
        return {"MINIO_HOST": "127.0.0.1", "MINIO_PORT": str(port)}, "MINIO_HOST / MINIO_PORT"
    if kind == "mongo":
        return {"MONGO_HOST": "127.0.0.1", "MONGO_PORT": str(port)}, "MONGO_HOST / MONGO_PORT"
    return {"DASK_CLUSTER_IP": f"127.0.0.1:{port}"}, "DASK_CLUSTER_IP"


def commands(tmp_path: Path) -> dict[str, list[str]]:
    files = inputs(tmp_path / "in")
    (tmp_path / "src").mkdir(exist_ok=True)
    common = [
        "--dataset",
        str(files["dataset"]),
        "--seasons",
        str(files["seasons"]),
        "--lc-labels",
        str(files["lc"]),
        "--sl-labels",
        str(files["sl"]),
    ]
    return {
        "status": ["status"],
        "run": ["run", "--provider", "local", "--source", str(tmp_path / "src"), "--no-progress", *common],
        "classify": ["classify", "--no-progress", *common],
    }


def startups(cmds: dict[str, list[str]], tmp_path: Path) -> dict[str, float]:
    """Each command's start-up (interpreter, imports, inputs) under this machine's present load,
    measured on the embedded default, which needs no server: `status` succeeds; `classify` reads
    its inputs, imports the workflow `run` imports too, then refuses (no model)."""
    env = {"LANDCOVERPY_HOME": str(tmp_path / "baseline")}
    seconds = {}
    for name in ("status", "classify"):
        started = time.monotonic()
        res = run_cli(cmds[name], env, tmp_path, timeout=120)
        seconds[name] = time.monotonic() - started
        assert (res.returncode == 0) == (name == "status"), res.stderr
    return seconds | {"run": seconds["classify"]}


# every server silent, and the scheduler refusing, in the default suite; the other refusals
# (the same connection code as the silent ones) in the slow pass
@pytest.mark.parametrize(
    ("kind", "state"),
    [
        ("s3", "silent"),
        ("mongo", "silent"),
        ("scheduler", "silent"),
        ("scheduler", "closed"),
        pytest.param("s3", "closed", marks=pytest.mark.slow),
        pytest.param("mongo", "closed", marks=pytest.mark.slow),
    ],
)
def test_unanswering_server_fails_fast_naming_the_setting(
    kind: str, state: str, tmp_path: Path, silent: servers.Server
) -> None:
    port = silent.port if state == "silent" else servers.free_port()
    env, setting = settings_for(kind, port)
    env |= {"LANDCOVERPY_HOME": str(tmp_path / "home"), "CONNECT_TIMEOUT": str(TIMEOUT)}
    cmds = commands(tmp_path)
    startup = startups(cmds, tmp_path)
    for name, args in cmds.items():
        if kind == "scheduler" and name == "classify":
            continue  # classify refuses earlier (no model), before it needs the cluster
        started = time.monotonic()
        res = run_cli(args, env, tmp_path, timeout=120)
        elapsed = time.monotonic() - started
        assert res.returncode != 0, (name, res.stdout)
        assert elapsed - startup[name] < HANG, (
            f"{name} against a {state} {kind} took {elapsed:.1f} s ({startup[name]:.1f} s start-up)"
        )
        errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and setting in errors[0] and f"127.0.0.1:{port}" in errors[0], (name, res.stderr)
        assert "Traceback" not in res.stderr


def test_wrong_mongo_credentials_say_which_settings_and_leak_nothing(tmp_path: Path, server_logs: Path) -> None:
    user, _ = servers.MONGO_USER
    secret = "wrong-Pa55word-XYZ"
    with servers.mongo_server(server_logs, auth=True) as server:
        for verbosity in ([], ["-v"], ["-vv"]):
            env = {
                "LANDCOVERPY_HOME": str(tmp_path / "home"),
                "MONGO_HOST": "127.0.0.1",
                "MONGO_PORT": str(server.port),
                "MONGO_USERNAME": user,
                "MONGO_PASSWORD": secret,
            }
            res = run_cli([*verbosity, "status"], env, tmp_path)
            assert res.returncode == 1
            errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
            assert len(errors) == 1 and "MONGO_USERNAME / MONGO_PASSWORD" in errors[0], res.stderr
            assert "$clusterTime" not in res.stderr and "errmsg" not in res.stderr
            assert secret not in res.stdout + res.stderr


def test_wrong_s3_credentials_leak_nothing(tmp_path: Path, server_logs: Path) -> None:
    secret = "wrong-S3-secret-XYZ"
    with servers.moto_server(server_logs, auth=True) as server:
        for verbosity in ([], ["-vv"]):
            env = {
                "LANDCOVERPY_HOME": str(tmp_path / "home"),
                "MINIO_HOST": "127.0.0.1",
                "MINIO_PORT": str(server.port),
                "MINIO_ACCESS_KEY": server.extra["access_key"],
                "MINIO_SECRET_KEY": secret,
            }
            res = run_cli([*verbosity, "status"], env, tmp_path)
            assert res.returncode == 1
            assert "MINIO_ACCESS_KEY / MINIO_SECRET_KEY" in res.stderr
            assert secret not in res.stdout + res.stderr
