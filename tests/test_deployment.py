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
COMPOSES = [
    (ROOT / "docker-compose.yml", ROOT / ".env.example"),
    (ROOT / "demo_deployment" / "docker-compose.yml", ROOT / "demo_deployment" / ".env.example"),
]


def env_example_keys(path: Path) -> set[str]:
    return {
        line.split("=", 1)[0].strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "=" in line
    }


@pytest.mark.parametrize(("compose", "env"), COMPOSES, ids=["top-level", "demo"])
def test_compose_renders(compose: Path, env: Path, tmp_path: Path) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (Debian package docker-compose) is not installed")
    res = subprocess.run(
        ["docker-compose", "--env-file", str(env), "-f", str(compose), "config"],
        capture_output=True,
        text=True,
        cwd=compose.parent,
        timeout=60,
    )
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
FIXED_BY_DEPLOYMENT = {
    "MINIO_HOST": "minio",
    "MINIO_PORT": "9000",
    "MONGO_HOST": "mongo",
    "MONGO_PORT": "27017",
    "DASK_CLUSTER_IP": "dask-scheduler:8786",
}


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


@pytest.mark.parametrize(("compose", "env"), COMPOSES, ids=["top-level", "demo"])
def test_optional_viewer_serves_the_store(compose: Path, env: Path) -> None:
    """TiTiler, only with `--profile viewer`, reading the COGs from MinIO."""
    service = yaml.safe_load(compose.read_text())["services"]["titiler"]
    assert service["profiles"] == ["viewer"]
    assert service["environment"]["AWS_S3_ENDPOINT"] == "minio:9000"
    assert service["environment"]["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert service["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "TILE_SERVER_URL" in env_example_keys(env)


def test_map_page_points_the_tile_server_at_the_store() -> None:
    from urllib.parse import unquote

    from landcoverpy.records import MapRecord
    from landcoverpy.viewer import map_page

    rec = {
        "_id": "map-x",
        "tile": "30SUF",
        "grid": {"crs": "EPSG:32630", "transform": [10, 0, 300000, 0, -10, 4100040], "width": 10980, "height": 10980},
        "classes": {"classification": {"1": "water", "2": "森林"}},
        "outputs": {
            "classification": {"bucket": "classification-maps", "key": "30SUF/map-x/classification.tif"},
            "confidence": {"bucket": "classification-maps", "key": "30SUF/map-x/confidence.tif"},
        },
    }
    html = map_page([MapRecord.model_validate(rec | {"kind": "classification"})], "http://localhost:8000")
    assert "http://localhost:8000/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url=" in html
    assert "s3://classification-maps/30SUF/map-x/classification.tif" in unquote(html)
    assert "confidence.tif" not in unquote(html) and "森林" in html
    assert "map.fitBounds([[36.03" in html and "[37.04" in html  # the tile footprint (30SUF, southern Spain)


def test_removed_setting_is_gone_everywhere() -> None:
    """MINIO_DATA_FOLDER_NAME did nothing: it is out of the settings, compose files and README."""
    assert "MINIO_DATA_FOLDER_NAME" not in Settings.model_fields
    for path in (
        ROOT / "docker-compose.yml",
        ROOT / ".env.example",
        ROOT / "README.md",
        ROOT / "demo_deployment" / "docker-compose.yml",
        ROOT / "demo_deployment" / ".env.example",
    ):
        assert "MINIO_DATA_FOLDER_NAME" not in path.read_text(), path


def test_no_secret_baked_into_the_image() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.strip().startswith(("ENV", "ARG")):
            assert not re.search(r"(SECRET|PASSWORD|ACCESS_KEY)", line), line
