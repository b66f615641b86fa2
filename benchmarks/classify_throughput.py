"""Benchmark of classification, in two parts (``--part per-core|tile|all``, default all).

**per-core** (the model, real data): inference throughput on one core of the default hierarchy
before and after random forests are sized by their spatial cross-validation (TREE_TOLERANCE,
models/forest_size.py), both levels (LULC categories, RABA subcategories) of the Slovenian patch
in ../shared/data/eolearn-slovenia, with the workflow's own features (two seasons' medians and
indices + NDVI time-series features over six periods: 60 features). For each block split
(``--seeds``) it trains the hierarchy as before (every tree, TREE_TOLERANCE=0) and as now,
checks that the sized category forest decides exactly as the first trees of the whole one (it
is that, not an approximation), reports trees and nodes per tree, the held-out accuracy of both
levels for both models, and the throughput of ``predict_layers`` (the classification task's own
call) on one thread; the inference code itself is scikit-learn's in both (faster evaluators were
measured slower, see the README).

**tile**: block-wise classification on Dask (2 local workers) vs the straightforward approach
(read whole rasters, one DataFrame, one ``predict``), on a generated full-size tile.

Composites for 2 seasons x 10 layers (20 features) are generated as COGs of ``--size`` x
``--size`` px (10980 = a full Sentinel-2 tile at 10 m) with realistic spatial structure (smooth
class fields + noise); a 100-tree random forest is trained on 6000 labelled pixels. Both variants
produce the same category map; each runs in its own process so its peak RSS is its own (the
Dask variant reports the largest worker's peak too).

    python benchmarks/classify_throughput.py [--part per-core|tile|all] [--seeds 0 1 2]
        [--data DIR] [--size 10980] [--block 1024]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEASONS = ("spring", "summer")
LAYERS = ("B02", "B03", "B04", "B08", "B11", "B12", "ndvi", "mndwi", "ndbi", "evi2")
N_CLASSES = 5


def _class_field(size: int, seed: int) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, N_CLASSES, size=(size // 200 + 2, size // 200 + 2))
    return ndimage.zoom(coarse, 200, order=0)[:size, :size].astype("uint8")


def generate(workdir: str, size: int) -> dict:
    """Composite COGs in a local store + catalog records, and a trained hierarchy."""
    import datetime as dt

    import rasterio
    from affine import Affine
    from rasterio.windows import Window
    from sklearn.ensemble import RandomForestClassifier

    from landcoverpy.catalog import EmbeddedCatalog
    from landcoverpy.raster.cog import translate_to_cog
    from landcoverpy.raster.grid import Grid

    root = Path(workdir)
    store = root / "home" / "store" / "composites"
    store.mkdir(parents=True, exist_ok=True)
    classes = _class_field(size, 1)
    rng = np.random.default_rng(2)
    signature = rng.uniform(0.02, 0.5, size=(len(SEASONS), len(LAYERS), N_CLASSES)).astype("float32")
    grid = Grid("EPSG:32630", (10.0, 0.0, 399960.0, 0.0, -10.0, 4200000.0), size, size)
    catalog = EmbeddedCatalog(root / "home" / "catalog.sqlite")
    samples_r = rng.integers(0, size, 6000)
    samples_c = rng.integers(0, size, 6000)
    X = np.zeros((6000, len(SEASONS) * len(LAYERS)), dtype="float32")
    for s, season in enumerate(SEASONS):
        bands, indices = {}, {}
        for l_idx, layer in enumerate(LAYERS):
            is_band = layer.startswith("B")
            tmp = root / f"tmp_{season}_{layer}.tif"
            dtype = "uint16" if is_band else "float32"
            with rasterio.open(
                tmp,
                "w",
                driver="GTiff",
                width=size,
                height=size,
                count=1,
                dtype=dtype,
                crs=grid.crs,
                transform=Affine(*grid.transform),
                tiled=True,
                blockxsize=512,
                blockysize=512,
                compress="ZSTD",
                nodata=0 if is_band else float("nan"),
            ) as dst:
                for row in range(0, size, 1024):
                    h = min(1024, size - row)
                    values = signature[s, l_idx][classes[row : row + h]]
                    values = values + rng.normal(0, 0.03, size=values.shape).astype("float32")
                    arr = np.clip(np.rint(values * 10000), 1, 65535).astype("uint16") if is_band else values
                    dst.write(arr, 1, window=Window(0, row, size, h))
            key = f"30SUF/{season}/bench/{layer}.tif"
            (store / key).parent.mkdir(parents=True, exist_ok=True)
            translate_to_cog(tmp, store / key, dtype)
            tmp.unlink()
            with rasterio.open(store / key) as src:
                vals = np.array(
                    [
                        src.read(1, window=Window(int(c), int(r), 1, 1))[0, 0]
                        for r, c in zip(samples_r[:6000], samples_c[:6000])
                    ]
                )
            X[:, s * len(LAYERS) + l_idx] = vals / 10000 if is_band else vals
            (bands if is_band else indices)[layer] = {"bucket": "composites", "key": key}
        catalog.upsert(
            "composites",
            {
                "_id": f"bench-{season}",
                "tile": "30SUF",
                "season": season,
                "grid": grid.to_dict(),
                "bands": bands,
                "indices": indices,
            },
        )
    y = classes[samples_r, samples_c]
    model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=-1).fit(X, y.astype(str))
    import joblib

    (root / "home" / "store" / "models").mkdir(parents=True, exist_ok=True)
    joblib.dump(model, root / "home" / "store" / "models" / "rf.joblib")
    (root / "meta.json").write_text(json.dumps({"size": size, "created": dt.datetime.now().isoformat()}))
    return {"train_samples": 6000}


def _features(workdir: str) -> tuple[dict, list[str]]:
    from landcoverpy.catalog import EmbeddedCatalog
    from landcoverpy.features import feature_names

    catalog = EmbeddedCatalog(Path(workdir) / "home" / "catalog.sqlite")
    comps = {s: catalog.get("composites", f"bench-{s}") for s in SEASONS}
    return comps, feature_names(comps)


def _model(workdir: str):  # noqa: ANN202
    import joblib

    model = joblib.load(Path(workdir) / "home" / "store" / "models" / "rf.joblib")
    model.set_params(n_jobs=1)
    return model


def straightforward(workdir: str) -> dict:
    """Read every feature raster whole into one DataFrame and call predict once."""
    import pandas as pd
    import rasterio

    comps, features = _features(workdir)
    store = Path(workdir) / "home" / "store"
    columns = {}
    for name in features:
        season, layer = name.split("_", 1)
        rec = comps[season]
        loc = rec["bands"].get(layer) or rec["indices"][layer]
        with rasterio.open(store / loc["bucket"] / loc["key"]) as src:
            arr = src.read(1)
        columns[name] = (arr.astype("float32") / 10000).ravel() if layer.startswith("B") else arr.ravel()
    frame = pd.DataFrame(columns)
    del columns
    start = time.perf_counter()
    pred = _model(workdir).predict(frame.to_numpy(dtype="float32"))
    seconds = time.perf_counter() - start
    counts = np.unique(pred, return_counts=True)
    return {"pixels": int(len(pred)), "predict_seconds": seconds, "counts": {str(k): int(v) for k, v in zip(*counts)}}


def blockwise(workdir: str, block: int = 1024, workers: int = 2) -> dict:
    """Our classify_block tasks on a LocalCluster of ``workers`` processes."""
    import resource

    from distributed import Client, LocalCluster, as_completed

    from landcoverpy.config import Settings
    from landcoverpy.pipeline.classification import LoadedHierarchy, classify_block
    from landcoverpy.raster.grid import block_windows
    from landcoverpy.storage import LocalStore

    comps, features = _features(workdir)
    model = _model(workdir)
    size = json.loads((Path(workdir) / "meta.json").read_text())["size"]
    settings = Settings(
        _env_file=None, LANDCOVERPY_HOME=Path(workdir) / "home", MINIO_BUCKET_CLASSIFICATIONS="classification-maps"
    )
    values = [int(c) for c in model.classes_]
    bundle = LoadedHierarchy("bench", features, model, [v + 1 for v in values], {}, {}, {}, {})
    store = LocalStore(settings.store_path)
    store.delete_prefix("classification-maps", "blocks/")
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="8GiB"
        ) as cluster,
        Client(cluster) as client,
    ):
        fut_model = client.scatter(bundle, broadcast=True, hash=False)
        futures = [
            client.submit(classify_block, settings, comps, fut_model, w, "blocks/bench", pure=False)
            for w in block_windows(size, size, block)
        ]
        for _ in as_completed(futures):
            pass
        worker_rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    counts: dict[str, int] = {}
    for key in store.list("classification-maps", "blocks/bench/classification/"):  # each layer its own object
        with store.open("classification-maps", key) as fh:
            arr = np.load(fh)["classification"]
        for v, c in zip(*np.unique(arr, return_counts=True)):
            counts[str(int(v) - 1)] = counts.get(str(int(v) - 1), 0) + int(c)
    return {"pixels": size * size, "max_worker_peak_rss_mib": max(worker_rss.values()), "counts": counts}


def _slovenia_features(data: Path) -> tuple[object, list[str]]:
    """The patch's per-pixel workflow features: seasonal medians + indices, NDVI series features."""
    import accuracy_slovenia as acc
    import pandas as pd

    import tests.realdata as realdata

    realdata.slovenia = lambda: data  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        median = acc.composite_features(Path(tmp), ())
    table = pd.concat([median, acc.series_features(data)], axis=1)
    return table, list(table.columns)


def _loaded(hierarchy: object, lc: object, sl: object) -> tuple:
    """The arguments of predict_layers, as the classification task loads them (one thread)."""
    cat = hierarchy.category_model  # type: ignore[attr-defined]
    cat.estimator.set_params(n_jobs=1)
    subs = {}
    for name, m in hierarchy.subcategory_models.items():  # type: ignore[attr-defined]
        m.estimator.set_params(n_jobs=1)
        subs[lc.value(name)] = (m.estimator, m.label_values)  # type: ignore[attr-defined]
    direct = {lc.value(c): v for c, v in hierarchy.direct.items()}  # type: ignore[attr-defined]
    return cat.estimator, cat.label_values, subs, direct


def _trees(hierarchy: object) -> dict:
    models = [hierarchy.category_model, *hierarchy.subcategory_models.values()]  # type: ignore[attr-defined]
    trees = [len(m.estimator.estimators_) for m in models]
    nodes = [t.tree_.node_count for m in models for t in m.estimator.estimators_]
    return {"category_trees": trees[0], "subcategory_trees": trees[1:], "nodes_per_tree": float(np.mean(nodes))}


def _sklearn_path():  # noqa: ANN202
    """Context in which predict_layers calls scikit-learn's predict_proba (the path before)."""
    import contextlib

    from landcoverpy.models import hierarchical

    @contextlib.contextmanager
    def patched():  # noqa: ANN202
        saved = hierarchical.forest_proba
        hierarchical.forest_proba = lambda est, X: est.predict_proba(X)
        try:
            yield
        finally:
            hierarchical.forest_proba = saved

    return patched()


def _throughput(args: tuple, rows: np.ndarray, repeats: int = 2) -> float:
    from landcoverpy.models.hierarchical import predict_layers

    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predict_layers(*args, rows)
        best = min(best, time.perf_counter() - started)
    return len(rows) / best / 1e3


VARIANTS = ("before: every tree, sklearn predict_proba", "same model, new path", "now: sized forest, new path")


def per_core(data: Path, seeds: list[int], rows: int = 300_000) -> list[dict]:
    """Today's default model and path vs the same model on the new path vs the sized default on
    the new path, on each block split; see the module docstring."""
    import accuracy_slovenia as acc
    from pyproj import Transformer

    from landcoverpy.assets.params import ModelParams
    from landcoverpy.models.forest_size import prefix_predictions
    from landcoverpy.models.hierarchical import predict_layers, train_hierarchy
    from landcoverpy.models.metrics import classification_metrics
    from tests.realdata import slovenia_raba, slovenia_transform
    from tests.test_training import RABA_NAMES, label_sets

    table, features = _slovenia_features(data)
    lulc = np.load(data / "LULC.npy")[..., 0].astype(int)
    raba = slovenia_raba()
    transform, crs = slovenia_transform()
    r, c = np.mgrid[0 : lulc.shape[0], 0 : lulc.shape[1]]
    xs, ys = transform @ (c.ravel() + 0.5, r.ravel() + 0.5)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    cat = np.array([acc.LULC_NAMES.get(int(v), "") for v in lulc.ravel()])
    sub = np.array([RABA_NAMES.get(int(v), "") for v in raba.ravel()])
    X = table[features].to_numpy("float32")
    ok = (cat != "") & np.isfinite(X).all(axis=1)
    frame = table.copy()
    frame["category"], frame["subcategory"], frame["latitude"], frame["longitude"] = cat, sub, lat, lon
    frame["point_id"] = np.arange(len(frame))
    lc, sl = label_sets(frame)
    base = ModelParams(block_km=0.2, folds=4, seed=7, min_class_points=3)
    timing_rows = np.ascontiguousarray(np.resize(X[ok], (rows, X.shape[1])))
    out = []
    for seed in seeds:
        split = acc.default_split(lulc.shape, seed).ravel()
        train, test = ok & (split == 1), ok & (split == 2)
        result: dict = {
            "seed": seed,
            "features": len(features),
            "train_pixels": int(train.sum()),
            "test_pixels": int(test.sum()),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            before = train_hierarchy(
                frame.loc[train].reset_index(drop=True), features, lc, sl, replace(base, tree_tolerance=0.0)
            )
            now = train_hierarchy(frame.loc[train].reset_index(drop=True), features, lc, sl, base)
        for name, hierarchy in zip(VARIANTS, (before, before, now)):
            args = _loaded(hierarchy, lc, sl)
            if name == VARIANTS[0]:
                with _sklearn_path():
                    layers = predict_layers(*args, X[test], probabilities=True)
                    speed = _throughput(args, timing_rows)
                reference = layers
            else:
                layers = predict_layers(*args, X[test], probabilities=True)
                speed = _throughput(args, timing_rows)
            if name == VARIANTS[1]:
                result["same model: identical layers"] = all(np.array_equal(layers[k], reference[k]) for k in layers)
            true_cat = np.array([lc.value(v) for v in cat[test]])
            m_cat = classification_metrics(true_cat, layers["classification"], sorted(set(true_cat)))
            has_sub = sub[test] != ""
            true_sub = np.array([sl.value(v) for v in sub[test][has_sub]])
            m_sub = classification_metrics(true_sub, layers["sl_classification"][has_sub], sorted(set(true_sub)))
            result[name] = {
                **_trees(hierarchy),
                "kpx_per_s": speed,
                "category": {k: round(m_cat[k], 4) for k in ("overall_accuracy", "kappa", "macro_f1")},
                "subcategory": {k: round(m_sub[k], 4) for k in ("overall_accuracy", "kappa", "macro_f1")},
            }
        kept = len(now.category_model.estimator.estimators_)
        same = np.array_equal(
            now.category_model.estimator.predict(X[ok]),
            prefix_predictions(before.category_model.estimator, X[ok], [kept])[kept],
        )
        result["sized forest = first trees of the whole one"] = bool(same)
        for name in VARIANTS[1:]:
            result[name]["speed-up"] = result[name]["kpx_per_s"] / result[VARIANTS[0]]["kpx_per_s"]
        out.append(result)
        print(json.dumps(result), flush=True)
    return out


def print_per_core(results: list[dict]) -> None:
    print("\nPer-core classification, both levels, 60 features (Slovenian patch, held-out blocks):")
    print(
        f"{'split':>5} {'variant':<44}{'trees cat/sub':>14}{'nodes/tree':>11}{'kpx/s':>7}{'ratio':>7}"
        f"{'cat kappa':>10}{'cat F1':>8}{'sub kappa':>10}{'sub F1':>8}"
    )
    for r in results:
        for name in VARIANTS:
            m = r[name]
            trees = f"{m['category_trees']}/{','.join(map(str, m['subcategory_trees']))}"
            print(
                f"{r['seed']:>5} {name:<44}{trees:>14}{m['nodes_per_tree']:>11.0f}{m['kpx_per_s']:>7.0f}"
                f"{m.get('speed-up', 1.0):>6.2f}x{m['category']['kappa']:>10.3f}{m['category']['macro_f1']:>8.3f}"
                f"{m['subcategory']['kappa']:>10.3f}{m['subcategory']['macro_f1']:>8.3f}"
            )
        print(
            f"{'':>5} same model, new path: identical layers on every pixel: {r['same model: identical layers']}; "
            f"sized forest = first trees of the whole one: {r['sized forest = first trees of the whole one']}"
        )
    for name in VARIANTS:
        mean = {
            lvl: {k: float(np.mean([r[name][lvl][k] for r in results])) for k in ("kappa", "macro_f1")}
            for lvl in ("category", "subcategory")
        }
        ratio = float(np.mean([r[name].get("speed-up", 1.0) for r in results]))
        print(
            f"mean over splits, {name}: {ratio:.2f}x; held-out kappa / macro F1: category "
            f"{mean['category']['kappa']:.3f} / {mean['category']['macro_f1']:.3f}, subcategory "
            f"{mean['subcategory']['kappa']:.3f} / {mean['subcategory']['macro_f1']:.3f}"
        )


def main() -> None:
    from _common import measure, report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("per-core", "tile", "all"), default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "eolearn-slovenia")
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-generate", action="store_true")
    args = ap.parse_args()
    if args.part in ("per-core", "all"):
        if not (args.data / "LULC.npy").exists():
            raise SystemExit(f"--data {args.data}: the eolearn-slovenia folder is needed for the per-core part")
        print_per_core(per_core(args.data, args.seeds))
    if args.part == "per-core":
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix="lcp-bench-cls-")
    try:
        if not args.skip_generate:
            gen = measure("classify_throughput", "generate", {"workdir": workdir, "size": args.size})
            print(
                f"generated 20 feature COGs of {args.size} x {args.size} px and a 100-tree forest "
                f"in {gen['seconds']:.0f} s"
            )
        rows = {
            "straightforward (1 process)": measure("classify_throughput", "straightforward", {"workdir": workdir}),
            f"block-wise Dask ({args.block} px, 2 workers)": measure(
                "classify_throughput", "blockwise", {"workdir": workdir, "block": args.block}
            ),
        }
        a, b = rows.values()
        assert a["result"]["counts"] == b["result"]["counts"], "the two variants disagree"
        worker_peak = b["result"]["max_worker_peak_rss_mib"]
        report(
            f"Classification of a {args.size} x {args.size} px tile, 20 features, 100 trees",
            rows,
            "straightforward (1 process)",
        )
        px = args.size**2
        for name, r in rows.items():
            print(f"{name:<44}{px / r['seconds'] / 1e6:8.2f} Mpx/s")
        print(
            f"largest Dask worker peak RSS: {worker_peak:.0f} MiB "
            f"({a['peak_rss_mib'] / worker_peak:.1f}x below the straightforward process)"
        )
        per_tile = b["seconds"]
        print(
            f"projected for the 487 Mediterranean tiles of the original paper: "
            f"{487 * per_tile / 3600:.1f} h with 2 workers ({487 * per_tile * 2 / 3600:.1f} worker-hours)"
        )
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
