"""Benchmark: BRITS abundance inference over one full MODIS tile (2400 x 2400 px) at the seed's
8-day steps (46 steps x 7 bands, 35 % of values missing, 3 ancillary variables), block by block
as `abundance predict` does (512 x 512 px blocks), for each hidden size asked, each in a fresh
process (wall time and peak RSS of that process). Prints the device each ran on; on a machine
with a GPU, `--device auto` runs there (mixed precision).

    python benchmarks/abundance_inference.py [--size 2400] [--steps 46] [--hidden 64 32]
                                             [--threads 2] [--device auto]

The baseline in the same run is the monthly series of before (12 steps, hidden 64).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BANDS, CLASSES = 7, 4


def run(size: int, steps: int, hidden: int, threads: int, device: str, block: int) -> dict:
    """Train a tiny model (2 epochs: inference cost does not depend on training), then predict
    every block of a size x size tile."""
    import torch

    from landcoverpy.models.abundance import AbundanceData, TrainParams, train_abundance
    from landcoverpy.models.device import describe, resolve_device

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    sig = rng.uniform(0.02, 0.5, size=(CLASSES, steps, BANDS)).astype("float32")

    def sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ab = rng.dirichlet(np.ones(CLASSES) * 0.7, size=n).astype("float32")
        x = np.einsum("nk,ktd->ntd", ab, sig) + rng.normal(0, 0.01, (n, steps, BANDS)).astype("float32")
        x[rng.uniform(size=(n, steps)) < 0.35] = np.nan
        anc = np.stack([500 + 800 * ab[:, 0], rng.uniform(-6, -1, n), rng.uniform(36, 39, n)], 1).astype("float32")
        return x.astype("float32"), anc, ab

    x, anc, ab = sample(2000)
    data = AbundanceData(x, anc, ab, np.arange(2000) // 100, [f"c{k}" for k in range(CLASSES)])
    model, _ = train_abundance(data, TrainParams(hidden=hidden, epochs=2, patience=5, model_type="brits",
                                                 threads=threads, device="cpu"))
    xb, ancb, _ = sample(block * block)  # one block's inputs, predicted for every block of the tile
    total, done = size * size, 0
    dev = resolve_device(device)
    start = time.perf_counter()
    while done < total:
        n = min(block * block, total - done)
        out = model.predict(xb[:n], ancb[:n], device=device)
        assert out.shape == (n, CLASSES)
        done += n
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "device": describe(dev)}


def main() -> None:
    from _common import measure

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2400)
    ap.add_argument("--steps", type=int, default=46)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    px = args.size * args.size
    variants = ([] if args.no_baseline else [(12, 64, "baseline: monthly, 12 steps")]) + \
        [(args.steps, h, f"{args.steps} steps") for h in args.hidden]
    base = None
    print(f"full tile {args.size} x {args.size} px ({px:,} px), {BANDS} bands, 35 % missing, {args.threads} threads")
    print(f"{'variant':<30} {'hidden':>6} {'device':<26} {'inference s':>11} {'px/s':>10} {'peak RSS':>9} {'vs base':>8}")
    for steps, hidden, name in variants:
        m = measure("abundance_inference", "run", {"size": args.size, "steps": steps, "hidden": hidden,
                                                   "threads": args.threads, "device": args.device,
                                                   "block": args.block})
        r = m["result"]
        base = base or r["seconds"]
        print(f"{name:<30} {hidden:>6} {r['device']:<26} {r['seconds']:>11.1f} {px / r['seconds']:>10,.0f} "
              f"{m['peak_rss_mib']:>6.0f} MiB {base / r['seconds']:>7.2f}x", flush=True)
    print("goal: a full tile at 46 steps in <= 120 s on 2 CPU cores")


if __name__ == "__main__":
    main()
