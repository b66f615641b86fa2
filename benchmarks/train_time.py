"""Training time of the hierarchical models on the demo's real training table: random forest vs
LightGBM with the default thread setting (one thread for LightGBM) vs LightGBM on every core,
on an idle machine and with the other core busy (as inside a Dask cluster), in one run.

    python benchmarks/train_time.py

Prints seconds per variant and the ratio to the random forest measured alongside.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def busy(stop: object) -> None:
    while not stop.is_set():  # type: ignore[attr-defined]
        sum(i * i for i in range(10000))


def demo_table(root: Path) -> tuple[object, object]:
    from distributed import Client, LocalCluster

    from landcoverpy.assets import lookup
    from landcoverpy.config import Settings
    from landcoverpy.context import Context
    from landcoverpy.demo import DEMO_TILE, demo_app_data, prepare_demo_source
    from landcoverpy.inputs import load_inputs
    from landcoverpy.pipeline.acquire import acquire
    from landcoverpy.pipeline.composites import composite
    from landcoverpy.pipeline.datasets import build_dataset
    from landcoverpy.sources.local import LocalProvider

    settings = Settings(_env_file=None, LANDCOVERPY_HOME=root / "home", TMP_DIR=root / "tmp")  # type: ignore[call-arg]
    data = demo_app_data()
    inputs = load_inputs(data / "dataset.csv", data / "seasons.json", data / "lc_labels.json", data / "sl_labels.json")
    ctx = Context.open(settings)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        acquire(ctx, LocalProvider(prepare_demo_source(root / "src")), [DEMO_TILE], inputs.seasons, client, False)
        composite(ctx, [DEMO_TILE], inputs.seasons, client, progress=False)
        ds = build_dataset(ctx, inputs, client)
    return lookup.load_table(ctx, ds.record), (ds.record, inputs)


def main() -> None:
    from landcoverpy.assets.params import ModelParams
    from landcoverpy.models.hierarchical import train_hierarchy

    with tempfile.TemporaryDirectory() as tmp:
        table, (record, inputs) = demo_table(Path(tmp))
    variants = {
        "random forest (every core)": ModelParams(),
        "LightGBM, default (1 thread)": ModelParams(model_type="lightgbm"),
        "LightGBM, every core": replace(ModelParams(model_type="lightgbm"), threads=mp.cpu_count()),
    }
    print(
        f"hierarchical training on the demo table: {len(table)} samples x {len(record['features'])} features, "
        "category + subcategory models, 5-fold spatial CV each"
    )
    print(f"{'variant':<32}{'idle s':>9}{'ratio':>8}{'busy core s':>13}{'ratio':>8}")
    results = {}
    for load in (False, True):
        stop = mp.Event()
        worker = mp.Process(target=busy, args=(stop,)) if load else None
        if worker:
            worker.start()
        try:
            for name, params in variants.items():
                t = time.perf_counter()
                train_hierarchy(table, record["features"], inputs.lc_labels, inputs.sl_labels, params)
                results[(name, load)] = time.perf_counter() - t
        finally:
            if worker:
                stop.set()
                worker.join()
    base = {load: results[("random forest (every core)", load)] for load in (False, True)}
    for name in variants:
        idle, busy_s = results[(name, False)], results[(name, True)]
        print(f"{name:<32}{idle:>9.1f}{idle / base[False]:>8.2f}{busy_s:>13.1f}{busy_s / base[True]:>8.2f}")


if __name__ == "__main__":
    main()
