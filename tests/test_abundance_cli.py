"""`landcoverpy abundance dataset | train | predict | finetune` on generated rasters: a fine
land-cover map, a 3-band coarse time series mixing class signatures by the true fractions (with
cloud gaps), and ancillary rasters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from landcoverpy import records
from landcoverpy.context import Context
from landcoverpy.raster.cog import validate_cog
from landcoverpy.records import AbundanceDatasetRecord, AbundanceModelRecord
from tests.abundance_data import signatures
from tests.conftest import make_settings
from tests.test_cli_status import run_cli

COARSE, FINE_PER_COARSE, RES = 24, 10, 460.0
ORIGIN = (300000.0, 4200000.0)


def make_area(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    n_fine = COARSE * FINE_PER_COARSE
    field = ndimage.gaussian_filter(rng.normal(size=(n_fine, n_fine)), 12)
    field2 = ndimage.gaussian_filter(rng.normal(size=(n_fine, n_fine)), 12)
    n1 = np.where(field > 0.01, 1, np.where(field2 > 0, 2, 3)).astype("uint8")
    n2 = np.where((n1 == 1) & (field2 > 0.0), 4, n1 + 1).astype("uint8")  # N1 class 1 splits into 2 and 4
    fine_t = Affine(RES / FINE_PER_COARSE, 0, ORIGIN[0], 0, -RES / FINE_PER_COARSE, ORIGIN[1])
    paths = {}
    for name, arr in (("n1", n1), ("n2", n2)):
        paths[name] = root / f"{name}.tif"
        with rasterio.open(
            paths[name],
            "w",
            driver="GTiff",
            width=n_fine,
            height=n_fine,
            count=1,
            dtype="uint8",
            crs="EPSG:32630",
            transform=fine_t,
            nodata=0,
        ) as dst:
            dst.write(arr, 1)
    frac = np.stack(
        [(n1 == k).reshape(COARSE, FINE_PER_COARSE, COARSE, FINE_PER_COARSE).mean(axis=(1, 3)) for k in (1, 2, 3)],
        axis=-1,
    )
    sig = signatures(3)  # (3, 12, 3): monthly curves
    coarse_t = Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    items = []
    for month in range(12):
        for day in (5, 20):
            values = np.einsum("rck,kd->drc", frac, sig[:, month]) + rng.normal(0, 0.01, (3, COARSE, COARSE))
            values[:, rng.uniform(size=(COARSE, COARSE)) < 0.35] = np.nan  # clouds
            path = root / "series" / f"mod_{month + 1:02d}_{day}.tif"
            path.parent.mkdir(exist_ok=True)
            with rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=COARSE,
                height=COARSE,
                count=3,
                dtype="float32",
                crs="EPSG:32630",
                transform=coarse_t,
                nodata=float("nan"),
            ) as dst:
                dst.write(values.astype("float32"))
                for i, b in enumerate(("b01", "b02", "b06"), start=1):
                    dst.set_band_description(i, b)
            items.append({"date": f"2021-{month + 1:02d}-{day:02d}", "path": f"series/{path.name}"})
    (root / "series.json").write_text(json.dumps(items))
    paths["series"] = root / "series.json"
    # altitude on its own (finer, larger) grid, related to class 1
    alt_t = Affine(100, 0, ORIGIN[0] - 1000, 0, -100, ORIGIN[1] + 1000)
    n_alt = int(COARSE * RES / 100) + 20
    alt = ndimage.zoom(300 + 900 * frac[..., 0], n_alt / COARSE, order=1)[:n_alt, :n_alt]
    paths["altitude"] = root / "altitude.tif"
    with rasterio.open(
        paths["altitude"],
        "w",
        driver="GTiff",
        width=n_alt,
        height=n_alt,
        count=1,
        dtype="float32",
        crs="EPSG:32630",
        transform=alt_t,
    ) as dst:
        dst.write(alt.astype("float32"), 1)
    paths["partial"] = root / "precip_partial.tif"  # covers only the western half
    with rasterio.open(
        paths["partial"],
        "w",
        driver="GTiff",
        width=COARSE // 2,
        height=COARSE,
        count=1,
        dtype="float32",
        crs="EPSG:32630",
        transform=coarse_t,
    ) as dst:
        dst.write(np.full((COARSE, COARSE // 2), 600, "float32"), 1)
    (root / "n1.json").write_text(json.dumps({"forest": 1, "crop": 2, "urban": 3}))
    (root / "n2.json").write_text(json.dumps({"conifer": 2, "crop_n2": 3, "urban_n2": 4, "broadleaf": 5}))
    paths["n1_labels"], paths["n2_labels"] = root / "n1.json", root / "n2.json"
    return paths


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("abundance-area")
    return root, make_area(root)


def test_dataset_train_predict(area: tuple[Path, dict[str, Path]]) -> None:
    root, p = area
    env = {"LANDCOVERPY_HOME": str(root / "home"), "TMP_DIR": str(root / "tmp"), "DASK_N_WORKERS": "1"}
    parents = root / "parents.json"
    parents.write_text(json.dumps({"conifer": "forest", "broadleaf": "forest", "crop_n2": "crop", "urban_n2": "urban"}))
    res = run_cli(
        [
            "abundance",
            "dataset",
            "--series",
            str(p["series"]),
            "--year",
            "2021",
            "--n1-map",
            str(p["n1"]),
            "--n1-labels",
            str(p["n1_labels"]),
            "--n2-map",
            str(p["n2"]),
            "--n2-labels",
            str(p["n2_labels"]),
            "--ancillary",
            f"altitude={p['altitude']}",
            "--block-km",
            "2",
            "--step",
            "monthly",
            "--n2-parents",
            str(parents),
        ],
        env,
        root,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{COARSE * COARSE} pixels, 12 steps (calendar months) x 3 bands, 3 ancillary, levels N1, N2" in res.stdout
    with Context.open(make_settings(root)) as ctx:
        [dataset] = records.find(ctx.catalog, AbundanceDatasetRecord, {"kind": "abundance"})
        assert dataset.parents == json.loads(parents.read_text())  # given, not inferred from the overlaps
    res = run_cli(["abundance", "train", "--level", "N1", "--epochs", "40", "--no-progress"], env, root, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    n1_model = res.stdout.split(":")[0].strip()
    rmse = float(res.stdout.split("test RMSE ")[1].split()[0])
    base = float(res.stdout.split("baseline: RMSE ")[1].split()[0])
    assert rmse < 0.7 * base, res.stdout
    res = run_cli(["abundance", "predict", "--level", "N1", "--output-dir", str(root / "out")], env, root, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    tif = root / "out" / "abundance_N1.tif"
    assert validate_cog(tif)[0] and validate_cog(root / "out" / "dominant_N1.tif")[0]
    with rasterio.open(tif) as src:
        assert src.descriptions == ("forest", "crop", "urban")
        cube = src.read()
    total = cube.sum(axis=0)
    np.testing.assert_allclose(total[np.isfinite(total)], 1.0, atol=1e-4)
    assert (root / "out" / "dominant_N1.png").stat().st_size > 5000
    from landcoverpy.styles import read_category_names, read_paletted_qml

    assert {label for label, _ in read_paletted_qml((root / "out" / "dominant_N1.qml").read_text()).values()} == {
        "forest",
        "crop",
        "urban",
    }
    assert read_category_names((root / "out" / "dominant_N1.tif.aux.xml").read_text())[1:] == [
        "forest",
        "crop",
        "urban",
    ]
    assert "singlebandpseudocolor" in (root / "out" / "abundance_N1.qml").read_text()
    # N2 with classes the N1 model does not know: predicting N2 with it is refused
    res = run_cli(["abundance", "train", "--level", "N2", "--epochs", "5", "--no-progress"], env, root, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_cli(
        ["abundance", "predict", "--level", "N2", "--model-id", n1_model, "--output-dir", str(root / "o2")],
        env,
        root,
        timeout=300,
    )
    assert res.returncode == 1
    assert "has classes unknown to model" in res.stderr and "conifer" in res.stderr
    # fine-tuning the N1 model (on the newest dataset) makes a model of its own, recorded as such
    res = run_cli(
        ["abundance", "finetune", "--level", "N1", "--base-model", n1_model, "--epochs", "3", "--no-progress"],
        env,
        root,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    tuned = res.stdout.split(":")[0].strip()
    assert tuned != n1_model and "test RMSE" in res.stdout, res.stdout
    with Context.open(make_settings(root)) as ctx:  # the CLI's LANDCOVERPY_HOME: root / home
        assert records.load(ctx.catalog, AbundanceModelRecord, tuned).base_model == n1_model  # type: ignore[union-attr]


def test_ancillary_not_covering_the_area_is_named(area: tuple[Path, dict[str, Path]]) -> None:
    root, p = area
    env = {"LANDCOVERPY_HOME": str(root / "home2")}
    res = run_cli(
        [
            "abundance",
            "dataset",
            "--series",
            str(p["series"]),
            "--year",
            "2021",
            "--n1-map",
            str(p["n1"]),
            "--n1-labels",
            str(p["n1_labels"]),
            "--ancillary",
            f"precipitation={p['partial']}",
        ],
        env,
        root,
        timeout=300,
    )
    assert res.returncode == 1
    assert "ancillary raster precipitation" in res.stderr and "does not cover the area" in res.stderr


def test_fractions_from_reference_polygons() -> None:
    """eolearn-slovenia's official land-use polygons (LULC_ID) give per-cell fractions close to
    the rasterised LULC map aggregated to the same 50 m cells."""
    from landcoverpy.pipeline.abundance import class_fractions
    from landcoverpy.raster.grid import Grid
    from tests.realdata import slovenia, slovenia_lulc, slovenia_transform

    transform, crs = slovenia_transform()
    coarse = Grid(crs, tuple(transform @ transform.scale(5, 5))[:6], 20, 20)
    classes = {"cultivated": 1, "forest": 2, "grassland": 3, "shrubland": 4, "artificial": 8}
    frac = class_fractions(str(slovenia() / "LULC.gpkg"), classes, coarse, field="LULC_ID")
    lulc = slovenia_lulc()[:100, :100].reshape(20, 5, 20, 5)
    ref = np.stack([(lulc == v).sum(axis=(1, 3)).ravel() for v in classes.values()], axis=1).astype(float)
    ref = ref / np.maximum(ref.sum(axis=1, keepdims=True), 1)
    ok = np.isfinite(frac).all(axis=1) & (ref.sum(axis=1) > 0)
    assert ok.sum() > 300
    np.testing.assert_allclose(frac[ok].sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(frac[ok] - ref[ok]).mean() < 0.05
    with pytest.raises(Exception, match="no attribute 'CLASS'"):
        class_fractions(str(slovenia() / "LULC.gpkg"), classes, coarse, field="CLASS")
