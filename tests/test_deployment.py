"""The compose files: they render with `docker-compose config` (no engine needed), every variable
they use is documented in their .env.example, and every variable given to the app is a setting."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from landcoverpy.config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSES = [(ROOT / "docker-compose.yml", ROOT / ".env.example"),
            (ROOT / "demo_deployment" / "docker-compose.yml", ROOT / "demo_deployment" / ".env.example")]


def env_example_keys(path: Path) -> set[str]:
    return {line.split("=", 1)[0].strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#") and "=" in line}


@pytest.mark.parametrize(("compose", "env"), COMPOSES, ids=["top-level", "demo"])
def test_compose_renders(compose: Path, env: Path, tmp_path: Path) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (Debian package docker-compose) is not installed")
    res = subprocess.run(["docker-compose", "--env-file", str(env), "-f", str(compose), "config"],
                         capture_output=True, text=True, cwd=compose.parent, timeout=60)
    assert res.returncode == 0, res.stderr
    rendered = yaml.safe_load(res.stdout)
    services = rendered["services"]
    assert {"minio", "mongo", "dask-scheduler", "dask-worker-1", "dask-worker-2", "app"} <= set(services)
    for name in ("minio", "mongo", "dask-scheduler", "dask-worker-1", "dask-worker-2"):
        assert "healthcheck" in services[name], name
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]  # no curl in MinIO images
    assert "version" not in yaml.safe_load(compose.read_text())  # obsolete key
    for worker in ("dask-worker-1", "dask-worker-2"):
        assert services["app"]["depends_on"][worker]["condition"] == "service_healthy"
    app_deps = services["app"]["depends_on"]
    assert app_deps["minio"]["condition"] == "service_healthy"
    assert app_deps["mongo"]["condition"] == "service_healthy"
    assert set(rendered["volumes"]) >= {"minio-data", "mongo-data"}
    # credentials come from .env, not from the file
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == env_example_keys_values(env)["MINIO_SECRET_KEY"]


def env_example_keys_values(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.split("#")[0].strip()
    return out


@pytest.mark.parametrize(("compose", "env"), COMPOSES, ids=["top-level", "demo"])
def test_every_variable_is_documented_and_read(compose: Path, env: Path) -> None:
    text = compose.read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    documented = env_example_keys(env)
    assert used <= documented, f"undocumented in {env.name}: {sorted(used - documented)}"
    data = yaml.safe_load(text)
    settings_fields = set(Settings.model_fields)
    for name in ("app", "dask-worker-1"):
        environment = data["services"][name]["environment"]
        unknown = set(environment) - settings_fields
        assert not unknown, f"{name} sets variables landcoverpy does not read: {sorted(unknown)}"
    # every published port is explained by a comment or an .env.example entry
    for service in data["services"].values():
        for port in service.get("ports", []):
            assert "${" in port, f"port {port} should be configurable from .env"


# Where the deployment itself decides the value (servers, inputs, folders inside the image).
FIXED_BY_DEPLOYMENT = {"MINIO_HOST": "minio", "MINIO_PORT": "9000", "MONGO_HOST": "mongo", "MONGO_PORT": "27017",
                       "DASK_CLUSTER_IP": "dask-scheduler:8786"}


@pytest.mark.parametrize(("compose", "env"), COMPOSES, ids=["top-level", "demo"])
def test_every_setting_reaches_the_containers(compose: Path, env: Path) -> None:
    """Each field of config.Settings is passed to the app and to every worker: a setting added
    to config.py and forgotten here fails this test."""
    data = yaml.safe_load(compose.read_text())
    documented = env_example_keys(env)
    for name in ("app", "dask-worker-1", "dask-worker-2"):
        environment = data["services"][name]["environment"]
        missing = set(Settings.model_fields) - set(environment)
        assert not missing, f"{compose.name} {name} does not pass {sorted(missing)}"
        for setting, value in environment.items():
            if setting in FIXED_BY_DEPLOYMENT:
                assert str(value) == FIXED_BY_DEPLOYMENT[setting], setting
            elif "${" in str(value):  # from .env: the variable of the same name, documented there
                assert str(value).startswith("${" + setting), (setting, value)
                assert setting in documented or ":-" in str(value), f"{setting} has no default and no .env entry"


def test_removed_setting_is_gone_everywhere() -> None:
    """MINIO_DATA_FOLDER_NAME did nothing: it is out of the settings, compose files and README."""
    assert "MINIO_DATA_FOLDER_NAME" not in Settings.model_fields
    for path in (ROOT / "docker-compose.yml", ROOT / ".env.example", ROOT / "README.md",
                 ROOT / "demo_deployment" / "docker-compose.yml", ROOT / "demo_deployment" / ".env.example"):
        assert "MINIO_DATA_FOLDER_NAME" not in path.read_text(), path


def test_no_secret_baked_into_the_image() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.strip().startswith(("ENV", "ARG")):
            assert not re.search(r"(SECRET|PASSWORD|ACCESS_KEY)", line), line
