"""Abundance accuracy on real data: the Slovenian patch of ../shared/data/eolearn-slovenia
aggregated to coarse cells (5 x 5 and 10 x 10 px of 10 m): real class fractions from the official
land-use map inside each cell, the real NDVI series (68 dates, real cloud gaps from the cloud
mask) averaged over the cell's clear pixels, the cell's mean altitude and position as ancillary
variables. One spatial-block split per cell size and seed, the same for every model:

- the mean-abundance baseline (the training cells' mean fractions everywhere);
- a random-forest regression on the linearly interpolated series + ancillaries;
- BRITS;
- their ensemble (the mean of BRITS's and the forest's fractions);
- the default model (``model_type`` auto: whichever of the three is best on the validation
  blocks, which are part of the training side, BRITS or the ensemble only with a lead over the
  forest beyond one standard error; the test blocks only score).

    python benchmarks/abundance_slovenia.py [--data DIR] [--seeds 0 1 2 3 4 5] [--cells 5 10] [--hidden 32]
                                            [--loss cross_entropy|mse]

One JSON line per (cell size, seed) with RMSE, MAE and R2 of each, then a summary line with the
means and the ratio of the default model's RMSE to the baseline's (goal <= 0.55) and to the
forest's (goal <= 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    import tests.realdata as realdata
    from landcoverpy.models.abundance import LOSSES, TrainParams, train_abundance
    from tests.abundance_data import slovenia_cells

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "eolearn-slovenia")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--cells", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--hidden", type=int, default=TrainParams.hidden, help="BRITS hidden size (default: the workflow's)"
    )
    ap.add_argument(
        "--loss", choices=LOSSES, default=TrainParams.loss, help="BRITS's training error (default: the workflow's)"
    )
    args = ap.parse_args()
    realdata.slovenia = lambda: args.data  # type: ignore[assignment]
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    rows = []
    for cell in args.cells:
        data = slovenia_cells(cell)
        gaps = np.diff(data.times)
        data.times = (data.times / float(np.median(gaps))).astype("float32")  # one typical gap = 1, as the workflow
        # spatial blocks of 200 x 200 m whatever the cell size (4 x 4 cells of 50 m, 2 x 2 of 100 m)
        data.blocks = (np.floor(data.ancillary[:, 2] / 200) * 1000 + np.floor(data.ancillary[:, 1] / 200)).astype(int)
        for seed in args.seeds:
            params = TrainParams(
                hidden=args.hidden,
                ancillary_hidden=16,
                epochs=150,
                patience=20,
                batch_size=32,
                seed=seed,
                threads=args.threads,
                test_fraction=0.25,
                model_type="auto",
                trees=300,
                loss=args.loss,
            )
            started = time.perf_counter()
            model, metrics = train_abundance(data, params)
            seconds = time.perf_counter() - started
            c, b = metrics["candidates"], metrics["baseline_levels"]["N1"]
            row = {
                "cell_px": cell,
                "cell_m": cell * 10,
                "seed": seed,
                "cells": len(data.series),
                "test_cells": metrics["split"]["test"],
                "validation_cells": metrics["split"]["validation"],
                "baseline": {k: round(b[k], 4) for k in ("rmse", "mae", "r2")},
                "forest": {k: round(c["forest"]["N1"][k], 4) for k in ("rmse", "mae", "r2")},
                "brits": {k: round(c["brits"]["N1"][k], 4) for k in ("rmse", "mae", "r2")},
                "ensemble": {k: round(c["ensemble"]["N1"][k], 4) for k in ("rmse", "mae", "r2")},
                "default": metrics["model_type"],
                "forest_trees": metrics["forest_size"]["trees"],
                "ensemble_trees": metrics["ensemble_forest_size"]["trees"],
                "seconds": round(seconds, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary: dict[str, object] = {"summary": True, "loss": args.loss}
    for cell in args.cells:
        sel = [r for r in rows if r["cell_px"] == cell]
        mean = {m: float(np.mean([r[m]["rmse"] for r in sel])) for m in ("baseline", "forest", "brits", "ensemble")}
        default = float(np.mean([r[r["default"]]["rmse"] for r in sel]))
        summary[f"{cell}px"] = {
            "rmse": {k: round(v, 4) for k, v in mean.items()} | {"default": round(default, 4)},
            "default_over_baseline": round(default / mean["baseline"], 3),
            "default_over_forest": round(default / mean["forest"], 3),
            "brits_over_forest": round(mean["brits"] / mean["forest"], 3),
            "ensemble_over_forest": round(mean["ensemble"] / mean["forest"], 3),
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
