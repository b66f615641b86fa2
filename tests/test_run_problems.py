"""`run` says what it could not do: a requested tile without products is reported with the cause
and the fix, the run exits non-zero, and what could be done is still done and exported."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lineage_scene import make_scene, plain_app_data
from tests.test_cli_status import run_cli


@pytest.mark.slow  # in `make test`'s second pass, not the default suite's 15-minute budget
def test_a_tile_without_products_fails_the_run_after_the_others_are_done(tmp_path: Path) -> None:
    source, data = make_scene(tmp_path), plain_app_data(tmp_path)
    env = {
        "LANDCOVERPY_HOME": str(tmp_path / "home"),
        "TMP_DIR": str(tmp_path / "tmp"),
        "DASK_N_WORKERS": "1",
        "N_ESTIMATORS": "20",
    }
    args = [
        "run",
        "--provider",
        "local",
        "--source",
        str(source),
        "--no-progress",
        "--tiles",
        "18SVG",
        "--tiles",
        "30SUF",
        "--output-dir",
        str(tmp_path / "out"),
        "--dataset",
        str(data / "dataset.csv"),
        "--seasons",
        str(data / "seasons.json"),
        "--lc-labels",
        str(data / "lc_labels.json"),
        "--sl-labels",
        str(data / "sl_labels.json"),
    ]
    res = run_cli(args, env, tmp_path, timeout=600)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Error: the run is incomplete" in res.stderr
    assert "30SUF winter: no usable product (0 found" in res.stderr and "widen the season" in res.stderr
    assert "30SUF: not classified" in res.stderr
    assert "landcoverpy acquire" not in res.stderr  # inside run the hint is not another command
    assert (tmp_path / "out" / "classification_18SVG.tif").is_file()  # the rest was done and exported
    assert "Traceback" not in res.stderr
