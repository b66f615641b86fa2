"""Benchmark: block-wise classification on Dask (2 local workers) vs the straightforward approach
(read whole rasters, one DataFrame, one ``predict``), on a generated full-size tile.

Composites for 2 seasons x 10 layers (20 features) are generated as COGs of ``--size`` x
``--size`` px (10980 = a full Sentinel-2 tile at 10 m) with realistic spatial structure (smooth
class fields + noise); a 100-tree random forest is trained on 6000 labelled pixels. Both variants
produce the same category map; each runs in its own process so its peak RSS is its own (the
Dask variant reports the largest worker's peak too).

    python benchmarks/classify_throughput.py [--size 10980] [--block 1024]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

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
            with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=1, dtype=dtype,
                               crs=grid.crs, transform=Affine(*grid.transform), tiled=True, blockxsize=512,
                               blockysize=512, compress="ZSTD", nodata=0 if is_band else float("nan")) as dst:
                for row in range(0, size, 1024):
                    h = min(1024, size - row)
                    values = signature[s, l_idx][classes[row:row + h]]
                    values = values + rng.normal(0, 0.03, size=values.shape).astype("float32")
                    arr = np.clip(np.rint(values * 10000), 1, 65535).astype("uint16") if is_band else values
                    dst.write(arr, 1, window=Window(0, row, size, h))
            key = f"30SUF/{season}/bench/{layer}.tif"
            (store / key).parent.mkdir(parents=True, exist_ok=True)
            translate_to_cog(tmp, store / key, dtype)
            tmp.unlink()
            with rasterio.open(store / key) as src:
                vals = np.array([src.read(1, window=Window(int(c), int(r), 1, 1))[0, 0]
                                 for r, c in zip(samples_r[:6000], samples_c[:6000])])
            X[:, s * len(LAYERS) + l_idx] = vals / 10000 if is_band else vals
            (bands if is_band else indices)[layer] = {"bucket": "composites", "key": key}
        catalog.upsert("composites", {"_id": f"bench-{season}", "tile": "30SUF", "season": season,
                                      "grid": grid.to_dict(), "bands": bands, "indices": indices})
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
    return {"pixels": int(len(pred)), "predict_seconds": seconds,
            "counts": {str(k): int(v) for k, v in zip(*counts)}}


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
    settings = Settings(_env_file=None, LANDCOVERPY_HOME=Path(workdir) / "home",
                        MINIO_BUCKET_CLASSIFICATIONS="classification-maps")
    values = [int(c) for c in model.classes_]
    bundle = LoadedHierarchy("bench", features, model, [v + 1 for v in values], {}, {}, {}, {})
    store = LocalStore(settings.store_path)
    store.delete_prefix("classification-maps", "blocks/")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="8GiB") as cluster, Client(cluster) as client:
        fut_model = client.scatter(bundle, broadcast=True, hash=False)
        futures = [client.submit(classify_block, settings, comps, fut_model, w, "blocks/bench", pure=False)
                   for w in block_windows(size, size, block)]
        for _ in as_completed(futures):
            pass
        worker_rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    counts: dict[str, int] = {}
    for key in store.list("classification-maps", "blocks/bench/"):
        with store.open("classification-maps", key) as fh:
            arr = np.load(fh)["classification"]
        for v, c in zip(*np.unique(arr, return_counts=True)):
            counts[str(int(v) - 1)] = counts.get(str(int(v) - 1), 0) + int(c)
    return {"pixels": size * size, "max_worker_peak_rss_mib": max(worker_rss.values()), "counts": counts}


def main() -> None:
    from _common import measure, report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-generate", action="store_true")
    args = ap.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="lcp-bench-cls-")
    try:
        if not args.skip_generate:
            gen = measure("classify_throughput", "generate", {"workdir": workdir, "size": args.size})
            print(f"generated 20 feature COGs of {args.size} x {args.size} px and a 100-tree forest "
                  f"in {gen['seconds']:.0f} s")
        rows = {
            "straightforward (1 process)": measure("classify_throughput", "straightforward", {"workdir": workdir}),
            f"block-wise Dask ({args.block} px, 2 workers)": measure(
                "classify_throughput", "blockwise", {"workdir": workdir, "block": args.block}),
        }
        a, b = rows.values()
        assert a["result"]["counts"] == b["result"]["counts"], "the two variants disagree"
        worker_peak = b["result"]["max_worker_peak_rss_mib"]
        report(f"Classification of a {args.size} x {args.size} px tile, 20 features, 100 trees", rows,
               "straightforward (1 process)")
        px = args.size**2
        for name, r in rows.items():
            print(f"{name:<44}{px / r['seconds'] / 1e6:8.2f} Mpx/s")
        print(f"largest Dask worker peak RSS: {worker_peak:.0f} MiB "
              f"({a['peak_rss_mib'] / worker_peak:.1f}x below the straightforward process)")
        per_tile = b["seconds"]
        print(f"projected for the 487 Mediterranean tiles of the original paper: "
              f"{487 * per_tile / 3600:.1f} h with 2 workers ({487 * per_tile * 2 / 3600:.1f} worker-hours)")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
