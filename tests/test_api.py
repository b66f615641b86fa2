"""The Python API example of the README runs as written (on the cut of the demo scene)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.lineage_scene import make_scene, plain_app_data

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_api_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_readme_api_example_runs(tmp_path: Path) -> None:
    source, data = make_scene(tmp_path / "scene"), plain_app_data(tmp_path / "scene")
    shutil.copytree(source, tmp_path / "products")
    shutil.copytree(data, tmp_path / "app_data")
    code = (
        readme_api_example() + "\nassert set(categories.attrs['classes']) == {1, 2, 3, 4}\n"
        "assert categories.rio.crs.to_epsg() == 32618 and 'map_id' in categories.attrs\n"
        "assert maps['18SVG'].id == result.maps['18SVG'].id\n"
        "print('API OK', pixels.sum())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "MONGO_", "DASK_", "LANDCOVERPY_"))}
    env |= {
        "LANDCOVERPY_HOME": str(tmp_path / "home"),
        "TMP_DIR": str(tmp_path / "tmp"),
        "DASK_N_WORKERS": "1",
        "N_ESTIMATORS": "20",
    }
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "API OK" in res.stdout and "EPSG:32618" in res.stdout
