"""The maps open in QGIS with their legends: Debian's python3-qgis, headless
(QT_QPA_PLATFORM=offscreen), loads each exported map with the style beside it, as a person opening
the GeoTIFF in QGIS does, and the legend shows the class names of the label files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import rasterio

from tests.lineage_scene import make_scene, plain_app_data
from tests.test_cli_status import run_cli
from tests.test_lineage import embedded, run_args

SYSTEM_PYTHON = "/usr/bin/python3"
LEGEND = Path(__file__).parent / "qgis" / "legend.py"


def qgis_missing() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is absent"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, text=True)
    return None if probe.returncode == 0 else "python3-qgis is not installed (make system-tools installs it)"


def legends(paths: list[Path], tmp_path: Path) -> dict[str, dict]:
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    res = subprocess.run(
        [SYSTEM_PYTHON, str(LEGEND), *map(str, paths)], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return {Path(k).name: v for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.slow
def test_maps_open_in_qgis_with_their_legends(tmp_path: Path) -> None:
    why = qgis_missing()
    if why:
        pytest.skip(why)
    scene = {"source": make_scene(tmp_path), "plain": plain_app_data(tmp_path)}
    backend = embedded(tmp_path)
    res = run_cli(run_args(scene, "plain", tmp_path / "out"), backend.env, tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "out"
    shown = legends(
        [out / f"{name}_18SVG.tif" for name in ("classification", "sl_classification", "confidence")], tmp_path
    )
    for name, labels in (("classification", "lc_labels.json"), ("sl_classification", "sl_labels.json")):
        layer = shown[f"{name}_18SVG.tif"]
        assert layer["valid"] and layer["style_loaded"] and layer["renderer"] == "paletted", layer
        names = json.loads((scene["plain"] / labels).read_text())
        classes = {int(float(v)): label for v, label in layer["classes"].items()}
        for label, value in names.items():
            assert classes.get(int(value)) == label, (name, label, classes)
    # the polygons of `vectorize`, in their GeoPackage with the style QGIS reads from layer_styles
    res = run_cli(["vectorize", "--mmu-pixels", "4", "--output-dir", str(out)], backend.env, tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    gpkg = out / "classification_mmu4_18SVG.gpkg"
    polygons = legends([Path(f"{gpkg}|layername=classification")], tmp_path)[f"{gpkg.name}|layername=classification"]
    assert polygons["valid"] and polygons["renderer"] == "categorizedSymbol" and polygons["field"] == "class"
    assert polygons["features"] > 0, polygons
    with rasterio.open(out / "classification_18SVG.tif") as src:
        colours = {v: "#{:02x}{:02x}{:02x}".format(*rgba[:3]) for v, rgba in src.colormap(1).items()}
    names = json.loads((scene["plain"] / "lc_labels.json").read_text())
    for label, colour in polygons["categories"].items():
        assert colour == colours[int(names[label])], (label, colour)  # the map's own colours

    confidence = shown["confidence_18SVG.tif"]
    assert confidence["style_loaded"] and confidence["renderer"] == "singlebandpseudocolor", confidence
    assert confidence["legend"][0].startswith("0") and confidence["legend"][-1].startswith("100"), confidence
