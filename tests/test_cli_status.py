"""`landcoverpy status` as a user runs it: a real subprocess with environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "MONGO_", "DASK_", "LANDCOVERPY_"))}
    return subprocess.run(
        [sys.executable, "-m", "landcoverpy.cli", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_status_with_no_servers_uses_embedded_default(tmp_path: Path) -> None:
    res = run_cli(["status"], {"LANDCOVERPY_HOME": str(tmp_path / "home")}, tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"local directory {tmp_path / 'home' / 'store'}" in res.stdout
    assert "embedded catalog" in res.stdout
    assert "local Dask cluster" in res.stdout
    assert (tmp_path / "home" / "catalog.sqlite").exists()


def test_status_against_real_servers(
    tmp_path: Path, s3_server: servers.Server, mongo_server: servers.Server, dask_scheduler: servers.Server
) -> None:
    env = {
        "MINIO_HOST": "127.0.0.1",
        "MINIO_PORT": str(s3_server.port),
        "MINIO_ACCESS_KEY": "testing",
        "MINIO_SECRET_KEY": "testing",
        "MONGO_HOST": "127.0.0.1",
        "MONGO_PORT": str(mongo_server.port),
        "MONGO_DB": "statuscheck",
        "DASK_CLUSTER_IP": dask_scheduler.address,
    }
    res = run_cli(["status"], env, tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"S3 at http://127.0.0.1:{s3_server.port}" in res.stdout
    assert f"MongoDB at 127.0.0.1:{mongo_server.port}/statuscheck" in res.stdout
    assert f"Dask scheduler at tcp://{dask_scheduler.address}" in res.stdout
    assert "2 worker(s) connected" in res.stdout


@pytest.mark.parametrize("variable", ["MONGO_PORT", "MINIO_PORT", "DASK_CLUSTER_IP"])
def test_status_fails_clearly_on_a_closed_port(tmp_path: Path, variable: str) -> None:
    port = servers.free_port()
    env = {"LANDCOVERPY_HOME": str(tmp_path / "home"), "CONNECT_TIMEOUT": "2"}
    if variable == "MONGO_PORT":
        env |= {"MONGO_HOST": "127.0.0.1", "MONGO_PORT": str(port)}
    elif variable == "MINIO_PORT":
        env |= {"MINIO_HOST": "127.0.0.1", "MINIO_PORT": str(port)}
    else:
        env |= {"DASK_CLUSTER_IP": f"127.0.0.1:{port}"}
    res = run_cli(["status"], env, tmp_path, timeout=30)
    assert res.returncode == 3  # a server that cannot be reached: exit status 3, "try again later"
    assert f"127.0.0.1:{port}" in res.stderr
    assert "unreachable" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MINIO_PORT", "not-a-port"), ("MIN_USEFUL_DATA_PERCENTAGE", "150"), ("MAX_PRODUCTS_COMPOSITE", "zero")],
)
def test_malformed_environment_names_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    res = run_cli(["status"], {variable: value, "LANDCOVERPY_HOME": str(tmp_path / "h")}, tmp_path)
    assert res.returncode == 1
    assert variable in res.stderr and value in res.stderr


def test_unwritable_home_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    res = run_cli(["status"], {"LANDCOVERPY_HOME": str(blocker / "home")}, tmp_path)
    assert res.returncode == 1
    assert "LANDCOVERPY_HOME" in res.stderr


def test_every_subcommand_has_help(tmp_path: Path) -> None:
    import typer.main

    from landcoverpy.cli import app

    def walk(group: object, prefix: list[str]) -> list[list[str]]:
        paths = [prefix]
        for name, cmd in getattr(group, "commands", {}).items():
            paths += walk(cmd, [*prefix, name])
        return paths

    root = typer.main.get_command(app)
    paths = walk(root, [])
    assert ["status"] in paths

    def options(group: object) -> list[tuple[str, object]]:
        found = [(getattr(group, "name", ""), p) for p in getattr(group, "params", [])]
        for cmd in getattr(group, "commands", {}).values():
            found += options(cmd)
        return found

    for command, param in options(root):  # every option says what it is for
        if getattr(param, "param_type_name", "") == "option":
            assert getattr(param, "help", None), f"{command} {param.opts} has no help text"
    for path in paths:
        sub = run_cli([*path, "--help"], {}, tmp_path)
        assert sub.returncode == 0, (path, sub.stderr)
        assert "Usage" in sub.stdout


def test_version_and_fixed_choices(tmp_path: Path) -> None:
    from landcoverpy import __version__

    res = run_cli(["--version"], {}, tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"landcoverpy {__version__}"
    res = run_cli(["acquire", "--provider", "sentinelhub"], {}, tmp_path)
    assert res.returncode == 2 and "'sentinelhub' is not one of" in res.stderr and "copernicus" in res.stderr
    res = run_cli(["abundance", "train", "--level", "N3"], {}, tmp_path)
    assert res.returncode == 2 and "'N3' is not one of" in res.stderr


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from landcoverpy.errors import ConfigurationError
    from landcoverpy.extras import require

    monkeypatch.setitem(sys.modules, "sentinelsat", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'landcoverpy\[copernicus\]'"):
        require("copernicus")
    monkeypatch.setitem(sys.modules, "pyhdf.SD", None)
    with pytest.raises(ConfigurationError, match=r"MODIS HDF4 .* 'modis' extra"):
        require("modis")


def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"LANDCOVERPY_HOME={tmp_path / 'from-dotenv'}\n")
    res = run_cli(["status"], {}, tmp_path)
    assert res.returncode == 0, res.stderr
    assert str(tmp_path / "from-dotenv") in res.stdout
