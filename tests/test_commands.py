"""Every command of the command line runs for real somewhere in the suite: the table below maps
each command to the test that runs it (checked against the Typer app, so a new command needs a
test), and the commands no other test ran (`version`, `share`, `train --tune`, `dem`, `modis`) run
here after a workflow run on the lineage scene."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from affine import Affine
from pyogrio.raw import read as ogr_read
from pyogrio.raw import write as ogr_write
from pyproj import Transformer
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from typer.main import get_command

from landcoverpy import __version__, records
from landcoverpy.assets.stac import build_catalog
from landcoverpy.cli import app
from landcoverpy.pipeline.dem import grid_lonlat_bounds
from landcoverpy.raster.grid import Grid
from landcoverpy.styles import read_paletted_qml
from tests.conftest import shared_data
from tests.lineage_scene import make_scene, plain_app_data
from tests.test_cli_status import run_cli
from tests.test_lineage import Backend, embedded, input_args, run_args
from tests.test_modis import GRANULE
from tests.test_worldclim import write_worldclim

TESTS = Path(__file__).parent

# command -> "file::test" that runs it as a user does (run_cli or a subprocess of the CLI)
COMMAND_TESTS = {
    "version": "test_commands.py::test_version_share_and_tuned_training",
    "status": "test_cli_status.py::test_status_with_no_servers_uses_embedded_default",
    "acquire": "test_stac_catalogs.py::test_acquire_command_with_an_aoi_stores_windows",
    "composite": "test_interrupted.py::test_killed_composite_leaves_no_scratch_and_resumes",
    "dem": "test_commands.py::test_dem_and_modis_commands",
    "dataset": "test_lineage.py::test_any_label_name_works_and_stays_intact",
    "train": "test_commands.py::test_version_share_and_tuned_training",
    "classify": "test_report.py::test_classify_from_a_stored_model_alone",
    "run": "test_lineage.py::test_model_a_b_a_reuses_a_and_exports_its_own_maps",
    "demo": "test_demo_e2e.py::test_demo_on_embedded_default_then_rerun_does_nothing",
    "modis": "test_commands.py::test_dem_and_modis_commands",
    "prune": "test_lineage.py::test_prune_keeps_the_most_recently_used_maps",
    "verify": "test_integrity.py::test_verify_repair_rebuilds_in_place",
    "share": "test_commands.py::test_version_share_and_tuned_training",
    "accuracy": "test_report.py::test_sample_design_then_area_adjusted_accuracy",
    "sample-design": "test_report.py::test_sample_design_then_area_adjusted_accuracy",
    "suggest-points": "test_report.py::test_suggested_points_are_where_the_model_is_least_sure",
    "abundance dataset": "test_abundance_cli.py::test_dataset_train_predict",
    "abundance train": "test_abundance_cli.py::test_dataset_train_predict",
    "abundance finetune": "test_abundance_cli.py::test_dataset_train_predict",
    "abundance predict": "test_abundance_cli.py::test_dataset_train_predict",
    "abundance impute": "test_abundance_levels.py::test_both_levels_from_the_cli_new_region_and_steps",
    "stac export": "test_lineage.py::test_stac_items_load_with_odc_stac",
    "stats": "test_commands.py::test_stats_per_region",
    "change": "test_commands.py::test_change_between_two_runs",
    "vectorize": "test_commands.py::test_vectorize_command",
}


def cli_commands() -> list[str]:
    def walk(cmd: object, prefix: str = "") -> list[str]:
        out = []
        for name, sub in getattr(cmd, "commands", {}).items():
            full = f"{prefix} {name}".strip()
            out += walk(sub, full) if getattr(sub, "commands", None) else [full]
        return out

    return sorted(walk(get_command(app)))


def test_every_command_is_run_by_a_named_test() -> None:
    assert sorted(COMMAND_TESTS) == cli_commands()
    for command, where in COMMAND_TESTS.items():
        file, test = where.split("::")
        source = (TESTS / file).read_text()
        names = {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)}
        assert test in names, (command, where)
        strings = {
            n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        missing = [w for w in command.split() if w not in strings and f"--{w}" not in strings]
        assert not missing, (command, where, missing)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Backend, dict[str, Path], Path]:
    root = tmp_path_factory.mktemp("commands")
    scene = {"source": make_scene(root), "plain": plain_app_data(root)}
    backend = embedded(root)
    res = run_cli(run_args(scene, "plain", root / "out"), backend.env, root, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return backend, scene, root


@pytest.mark.slow
def test_version_share_and_tuned_training(workflow: tuple[Backend, dict[str, Path], Path]) -> None:
    backend, scene, root = workflow
    res = run_cli(["version"], backend.env, root)
    assert res.returncode == 0 and res.stdout.strip().endswith(__version__), res.stdout

    res = run_cli(["--quiet", "share", "--expires", "2h"], backend.env, root)
    assert res.returncode == 0, res.stderr[-2000:]
    assert " INFO " not in res.stderr, res.stderr  # --quiet: warnings and errors only
    assert "18SVG map map-18SVG-" in res.stdout, res.stdout
    links = [line.split(": ", 1)[1] for line in res.stdout.splitlines() if line.strip().startswith("classification:")]
    assert links and links[0].startswith("file://") and Path(links[0].removeprefix("file://")).is_file(), res.stdout

    res = run_cli(["train", "--tune", "--trials", "2", *input_args(scene, "plain")], backend.env, root, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = [line for line in res.stdout.splitlines() if line.startswith("trial ")]
    assert len(trials) == 2 and all("macro F1" in t for t in trials), res.stdout
    assert "category OA" in res.stdout


def aster_tiles(folder: Path, lon0: int, lat0: int, lon1: int, lat1: int) -> None:
    """ASTER GDEM-named GeoTIFFs (0.001 degree pixels) over whole degrees: a tilted plane."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 1001
    for lat in range(lat0, lat1 + 1):
        for lon in range(lon0, lon1 + 1):
            name = (
                f"ASTGTMV003_{'N' if lat >= 0 else 'S'}{abs(lat):02d}{'E' if lon >= 0 else 'W'}{abs(lon):03d}_dem.tif"
            )
            yy, xx = np.mgrid[0:n, 0:n]
            z = (100 + 50 * (lon + xx / (n - 1)) + 80 * (lat + 1 - yy / (n - 1))).astype("int16")
            profile = {"driver": "GTiff", "width": n, "height": n, "count": 1, "dtype": "int16", "crs": "EPSG:4326"}
            transform = from_origin(lon, lat + 1, 1 / (n - 1), 1 / (n - 1))
            with rasterio.open(folder / name, "w", **profile, transform=transform) as dst:
                dst.write(z, 1)


@pytest.mark.slow
def test_dem_and_modis_commands(workflow: tuple[Backend, dict[str, Path], Path]) -> None:
    backend, scene, root = workflow
    with backend.context() as ctx:
        grid = records.find(ctx.catalog, records.CompositeRecord)[0].as_source().pixel_grid
    west, south, east, north = grid_lonlat_bounds(grid)
    aster_tiles(root / "aster", int(np.floor(west)), int(np.floor(south)), int(np.floor(east)), int(np.floor(north)))
    args = ["dem", "--source", str(root / "aster"), "--tiles", "18SVG", *input_args(scene, "plain")]
    res = run_cli(args, backend.env, root, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("18SVG: built dem-"), res.stdout
    abundance_from_dem_and_climate(backend, grid, root)

    granules = root / "granules"
    granules.mkdir()
    shutil.copy(shared_data("modis-mod09ga") / GRANULE, granules / GRANULE)  # skips without the shared data
    res = run_cli(
        ["modis", "--tile", "h14v17", "--start", "2008-10-01", "--end", "2008-10-31", "--source", str(granules)],
        backend.env,
        root,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "h14v17: 1 granule(s)" in res.stdout, res.stdout


def abundance_from_dem_and_climate(backend: Backend, grid: Grid, root: Path) -> None:
    """`abundance dataset --dem-ancillary --climate --step-days`: a MODIS-like series on a 480 m
    grid inside the tile gets altitude and slope from the DEM just built (the ASTER plane's value at
    each pixel's centre) and WorldClim normals (the known fields of test_worldclim), in 16-day steps."""
    res_m, n = 480.0, 18
    x0, y0 = grid.affine @ (48, 48)  # 480 m in from the tile grid's corner
    coarse = Affine(res_m, 0, x0, 0, -res_m, y0)
    rng = np.random.default_rng(1)
    items = []
    for day in range(1, 365, 8):  # MOD09A1's 8-day composites
        when = dt.date(2021, 1, 1) + dt.timedelta(days=day - 1)
        path = root / "series" / f"s{day:03d}.tif"
        path.parent.mkdir(exist_ok=True)
        profile = {"driver": "GTiff", "width": n, "height": n, "count": 3, "dtype": "float32", "crs": grid.crs}
        with rasterio.open(path, "w", **profile, transform=coarse, nodata=float("nan")) as dst:
            dst.write(rng.uniform(0.02, 0.4, (3, n, n)).astype("float32"))
        items.append({"date": when.isoformat(), "path": f"series/{path.name}"})
    (root / "series.json").write_text(json.dumps(items))
    lon0, lat0, lon1, lat1 = transform_bounds(grid.crs, "EPSG:4326", x0, y0 - n * res_m, x0 + n * res_m, y0)
    write_worldclim(root / "wc", west=np.floor(lon0 * 10) / 10, north=np.ceil(lat1 * 10) / 10, size=48)
    args = ["abundance", "dataset", "--series", str(root / "series.json"), "--year", "2021", "--unlabelled"]
    args += ["--dem-ancillary", "--climate", str(root / "wc"), "--step-days", "16"]
    res = run_cli(args, backend.env, root, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{n * n} pixels, 23 steps" in res.stdout, res.stdout  # 365 days in 16-day steps
    with backend.context() as ctx:
        [rec] = records.find(ctx.catalog, records.AbundanceDatasetRecord, {"kind": "abundance"})
        table = pd.read_parquet(io.BytesIO(ctx.store.get_bytes(rec.bucket, rec.key)))
    assert {"altitude", "slope", "precipitation", "pet", "tmean", "tmax", "tmin"} <= set(rec.ancillary), rec.ancillary
    xs, ys = coarse @ (table["col"].to_numpy() + 0.5, table["row"].to_numpy() + 0.5)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    plane = 100 + 50 * lon + 80 * lat  # aster_tiles' elevation
    np.testing.assert_allclose(table["anc_altitude"], plane, atol=2.0)
    assert np.isfinite(table["anc_slope"]).all() and table["anc_slope"].max() < 5  # a gentle plane
    np.testing.assert_allclose(table["anc_tmean"], 12.0 - 4 * (lat - 37.9), atol=0.1)  # test_worldclim.field
    assert 300 < table["anc_pet"].mean() < 2000  # mm/year


@pytest.mark.slow
def test_stats_per_region(workflow: tuple[Backend, dict[str, Path], Path]) -> None:
    """Two regions splitting the map's tile in halves: their class areas add up to the map's."""
    backend, _, root = workflow
    with backend.context() as ctx:
        the_map = records.find(ctx.catalog, records.MapRecord, {"kind": "classification"})[0]
    grid = the_map.pixel_grid
    west, north = grid.affine @ (0, 0)
    east, south = grid.affine @ (grid.width, grid.height)
    middle = (west + east) / 2
    halves = [shapely.box(west, south, middle, north), shapely.box(middle, south, east, north)]
    regions = root / "halves.gpkg"
    ogr_write(
        str(regions),
        shapely.to_wkb(np.array(halves, dtype=object)),
        [np.array(["west", "east"], dtype=object)],
        ["half"],
        driver="GPKG",
        crs=grid.crs,
        geometry_type="Polygon",
    )
    res = run_cli(
        ["stats", "--regions", str(regions), "--field", "half", "--output-dir", str(root / "stats")],
        backend.env,
        root,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    table = list(csv.DictReader(open(root / "stats" / "region_stats.csv", encoding="utf-8")))
    assert {r["region"] for r in table} == {"west", "east"} and {r["level"] for r in table} == {
        "category",
        "subcategory",
    }
    for name, pixels in the_map.pixel_counts["classification"].items():
        assert sum(int(r["pixels"]) for r in table if r["level"] == "category" and r["class"] == name) == pixels, name
    meta, _, _, _ = ogr_read(str(root / "stats" / "region_stats.gpkg"), layer="category")
    assert "half" in list(meta["fields"])

    # --reference: a sample that agrees with the map everywhere gives back the mapped areas, +- 0
    with rasterio.open(root / "out" / "classification_18SVG.tif") as src:
        classes = src.read(1)
    names = {v: n for n, v in the_map.class_values("classification").items()}
    rng = np.random.default_rng(2)
    rr, cc = np.nonzero(classes)
    pick = rng.choice(len(rr), 60, replace=False)
    xs, ys = grid.affine @ (cc[pick] + 0.5, rr[pick] + 0.5)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    sample = root / "agreeing_sample.csv"
    lines = ["latitude,longitude,category"]
    lines += [f"{la:.8f},{lo:.8f},{names[int(classes[r, c])]}" for la, lo, r, c in zip(lat, lon, rr[pick], cc[pick])]
    sample.write_text("\n".join(lines) + "\n")
    args = ["stats", "--regions", str(regions), "--field", "half", "--reference", str(sample)]
    res = run_cli([*args, "--output-dir", str(root / "stats2")], backend.env, root, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    estimates = list(csv.DictReader(open(root / "stats2" / "region_area_adjusted.csv", encoding="utf-8")))
    sampled = [r for r in estimates if r["level"] == "category" and int(r["sample"]) > 0]
    assert {r["region"] for r in sampled} == {"west", "east"} and len(sampled) >= 3, estimates
    for row in sampled:
        assert float(row["estimated_ha"]) == pytest.approx(float(row["mapped_ha"]), abs=1e-3), row
        assert row["ci95_ha"] in ("0.0", "") and float(row["users_accuracy"]) == 1.0, row


@pytest.mark.slow
def test_vectorize_command(workflow: tuple[Backend, dict[str, Path], Path]) -> None:
    """Polygons of the latest map at a unit of 0.04 ha (4 pixels of 10 m): recorded beside the map,
    exported, in the STAC item, owned (verify agrees), and reused when asked again."""
    backend, _, root = workflow
    args = ["vectorize", "--level", "category", "--mmu-ha", "0.04", "--output-dir", str(root / "vectors")]
    res = run_cli(args, backend.env, root, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "classification_mmu4.gpkg" in res.stdout and "classification_mmu4.fgb" in res.stdout, res.stdout
    with backend.context() as ctx:
        the_map = records.find(ctx.catalog, records.MapRecord, {"kind": "classification"})[0]
        catalog = build_catalog(ctx)
    assert set(the_map.vectors) == {"classification_mmu4.gpkg", "classification_mmu4.fgb"}
    item = next(i for i in catalog.get_items(recursive=True) if i.id == the_map.id)
    assert item.assets["classification_mmu4_gpkg"].media_type == "application/geopackage+sqlite3"
    assert item.assets["classification_mmu4_fgb"].media_type == "application/vnd.flatgeobuf"
    meta, _, _, fields = ogr_read(str(root / "vectors" / "classification_mmu4_18SVG.gpkg"), layer="classification")
    table = dict(zip(meta["fields"], fields, strict=True))
    valid = sum(the_map.pixel_counts["classification"].values())
    assert int(table["pixels"].sum()) == valid  # the sieve moves pixels between classes, never drops any
    assert (table["pixels"] < 4).sum() <= 0.01 * len(table["pixels"])  # only regions closed in by nodata
    assert set(table["class"]) <= set(the_map.class_values("classification"))
    checked = run_cli(["verify"], backend.env, root)
    assert checked.returncode == 0 and "store and catalog agree" in checked.stdout, checked.stdout
    again = run_cli(args[:-2], backend.env, root, timeout=600)  # made already: the same objects
    assert again.returncode == 0, again.stderr[-3000:]
    made = sorted(line for line in res.stdout.splitlines() if "exported" not in line)
    assert sorted(again.stdout.splitlines()) == made


@pytest.mark.slow
def test_change_between_two_runs(workflow: tuple[Backend, dict[str, Path], Path]) -> None:
    """The same place mapped again by another model: `change --from RUN --to MAP` tabulates every
    pixel once, and its change map opens with a legend of transitions."""
    backend, scene, root = workflow
    first = json.loads((root / "out" / "run.json").read_text())
    res = run_cli(
        run_args(scene, "plain", root / "second"),
        backend.env | {"MODEL_TYPE": "lightgbm", "N_ESTIMATORS": "20"},
        root,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    second = json.loads((root / "second" / "run.json").read_text())
    later = second["maps"]["18SVG"]["_id"]
    assert later != first["maps"]["18SVG"]["_id"]
    res = run_cli(
        ["change", "--from", first["run_id"], "--to", later, "--output-dir", str(root / "change")],
        backend.env,
        root,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    table = list(csv.DictReader(open(root / "change" / "transitions_category_18SVG.csv", encoding="utf-8")))
    with backend.context() as ctx:
        before = records.load(ctx.catalog, records.MapRecord, first["maps"]["18SVG"]["_id"])
    assert before is not None
    for name, pixels in before.pixel_counts["classification"].items():  # every mapped pixel once
        assert sum(int(r["pixels"]) for r in table if r["from"] == name) <= pixels
    stable = sum(int(r["pixels"]) for r in table if r["from"] == r["to"])
    assert stable > 0.5 * sum(int(r["pixels"]) for r in table)  # two models of one place mostly agree
    legend = read_paletted_qml((root / "change" / "change_category_18SVG.qml").read_text())
    assert any(" -> " in label for label, _ in legend.values()) and "water" in {label for label, _ in legend.values()}
    assert (root / "change" / "transitions_category_18SVG.png").stat().st_size > 10_000  # the matrix figure
    # catalogued beside the maps, its lineage naming the two maps; its STAC item too; verify agrees
    with backend.context() as ctx:
        [product] = records.find(ctx.catalog, records.MapRecord, {"kind": "change"})
        catalog = build_catalog(ctx)
    assert product.sources == [first["maps"]["18SVG"]["_id"], later] and f"catalogued as {product.id}" in res.stdout
    assert set(product.attachments) == {"transitions_category.csv", "transitions_category.png"}
    assert sum(product.pixel_counts["change"].values()) == sum(int(r["pixels"]) for r in table)
    item = next(i for i in catalog.get_items(recursive=True) if i.id == product.id)
    assert item.properties["landcoverpy:inputs"] == product.sources
    assert item.assets["change"].media_type.startswith("image/tiff")
    assert item.assets["transitions_category_png"].media_type == "image/png"
    checked = run_cli(["verify"], backend.env, root)
    assert checked.returncode == 0 and "store and catalog agree" in checked.stdout, checked.stdout
