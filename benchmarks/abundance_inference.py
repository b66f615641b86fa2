"""Benchmark: BRITS abundance inference over one full MODIS tile (2400 x 2400 px) at the seed's
8-day steps (46 steps x 7 bands, 35 % of the steps cloudy, 3 ancillary variables), block by block
as `abundance predict` does (512 x 512 px blocks), each variant in fresh processes (wall time and
peak RSS per process).

Variants, all in the same run:

- baseline: the monthly series of before (12 steps, hidden 64) through the network's own
  forward (the straightforward path `predict` used before the fast path);
- 46 steps through the network's forward (what the seed's series would have cost);
- 46 steps through `AbundanceModel.predict` (the fast path of `models/brits_infer.py` on CPUs):
  one process with all threads, and the tile's blocks split over `--workers` processes of
  threads/workers threads each, as the local Dask cluster runs them (2 workers x 1 thread on 2
  cores; the wall time is the slowest process's).
- with ``--kind forest|ensemble``: first the forest with every tree (``tree_tolerance`` 0, as
  before forests were cut to the trees their validation blocks need), the in-run baseline of the
  sized variants; the trees each kept are printed (an ensemble's forest is sized for the
  ensemble: scored averaged with BRITS on the validation blocks).

    python benchmarks/abundance_inference.py [--size 2400] [--steps 46] [--hidden 32]
                                             [--threads 2] [--workers 2] [--device auto]
                                             [--kind brits|forest|ensemble] [--train-pixels N]

Prints the device each ran on; on a machine with a GPU, `--device auto` runs `predict` there
(the network in large batches, mixed precision).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BANDS, CLASSES = 7, 4


def run(
    size: int,
    steps: int,
    hidden: int,
    threads: int,
    device: str,
    block: int,
    path: str,
    part: int = 0,
    parts: int = 1,
    kind: str = "brits",
    train_pixels: int = 2000,
    tree_tolerance: float | None = None,
) -> dict:
    """Train a small model (2 epochs: a network's inference cost does not depend on training; a
    forest's grows with its depth, so ``train_pixels`` sets how many pixels it learns from), then
    predict this process's share of the blocks of a size x size tile (``shares``). A forest is
    cut to the trees its validation blocks need (``tree_tolerance``; 0 keeps every tree)."""
    import torch

    from landcoverpy.models.abundance import AbundanceData, TrainParams, prepare_tensors, train_abundance
    from landcoverpy.models.device import describe, resolve_device

    rng = np.random.default_rng(0)
    sig = rng.uniform(0.02, 0.5, size=(CLASSES, steps, BANDS)).astype("float32")

    def sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ab = rng.dirichlet(np.ones(CLASSES) * 0.7, size=n).astype("float32")
        x = np.einsum("nk,ktd->ntd", ab, sig) + rng.normal(0, 0.01, (n, steps, BANDS)).astype("float32")
        x[rng.uniform(size=(n, steps)) < 0.35] = np.nan
        anc = np.stack([500 + 800 * ab[:, 0], rng.uniform(-6, -1, n), rng.uniform(36, 39, n)], 1).astype("float32")
        return x.astype("float32"), anc, ab

    x, anc, ab = sample(train_pixels)
    data = AbundanceData(x, anc, ab, np.arange(train_pixels) // 100, [f"c{k}" for k in range(CLASSES)])
    tolerance = TrainParams.tree_tolerance if tree_tolerance is None else tree_tolerance
    model, _ = train_abundance(
        data,
        TrainParams(
            hidden=hidden,
            epochs=2,
            patience=5,
            model_type=kind,
            threads=threads,
            device="cpu",
            tree_tolerance=tolerance,
        ),
    )
    torch.set_num_threads(threads)  # training sets its own
    xb, ancb, _ = sample(block * block)  # one block's inputs, predicted for every block of the tile
    blocks = shares(_block_sizes(size, block), parts)[part]
    dev = resolve_device(device) if path == "predict" else torch.device("cpu")
    network = model.network.eval() if model.network is not None else None
    start = time.perf_counter()
    for n in blocks:
        if path == "predict":
            out = model.predict(xb[:n], ancb[:n], device=device)
        else:  # the network's forward, batches of 8192, as predict did before the fast path
            times = np.asarray(model.times, "float32") if model.times is not None else None
            out = np.empty((n, CLASSES), "float32")
            with torch.inference_mode():
                for s in range(0, n, 8192):
                    t = prepare_tensors(
                        xb[s : min(s + 8192, n)], ancb[s : min(s + 8192, n)], model.normalisation, times
                    )
                    res = network(
                        *(torch.from_numpy(np.ascontiguousarray(t[k])) for k in ("x", "m", "d_fwd", "d_bwd")),
                        torch.from_numpy(t["anc"]),
                    )
                    out[s : s + 8192] = res["abundance"].numpy()
        assert out.shape == (n, CLASSES)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    trees = len(model.forest.estimators_) if model.forest is not None else 0
    return {"seconds": time.perf_counter() - start, "device": describe(dev), "pixels": int(sum(blocks)), "trees": trees}


def shares(sizes: list[int], parts: int) -> list[list[int]]:
    """Blocks dealt largest first to the least loaded process, as a scheduler's queue evens out."""
    out: list[list[int]] = [[] for _ in range(parts)]
    for n in sorted(sizes, reverse=True):
        min(out, key=sum).append(n)
    return out


def _block_sizes(size: int, block: int) -> list[int]:
    edges = list(range(0, size, block))
    return [min(block, size - r) * min(block, size - c) for r in edges for c in edges]


def main() -> None:
    from _common import measure

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2400)
    ap.add_argument("--steps", type=int, default=46)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="processes sharing the tile (threads/workers each)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument(
        "--kind",
        default="brits",
        choices=["brits", "forest", "ensemble"],
        help="model type predicted by the `predict` variants (the forward variants are BRITS's)",
    )
    ap.add_argument(
        "--train-pixels",
        type=int,
        default=2000,
        help="pixels the model learns from (a forest's depth, so its cost, grows with them)",
    )
    args = ap.parse_args()
    px = args.size * args.size
    common = {
        "size": args.size,
        "threads": args.threads,
        "device": args.device,
        "block": args.block,
        "train_pixels": args.train_pixels,
    }
    per_worker = max(1, args.threads // args.workers)
    variants = (
        []
        if args.no_baseline
        else [
            ("baseline: 12 steps, forward", 12, 64, "forward", 1, None),
            (f"{args.steps} steps, forward", args.steps, args.hidden, "forward", 1, None),
        ]
    ) + [
        (f"{args.steps} steps, predict {args.kind}", args.steps, args.hidden, "predict", 1, None),
        (
            f"{args.steps} steps, predict {args.kind}, {args.workers}x{per_worker}",
            args.steps,
            args.hidden,
            "predict",
            args.workers,
            None,
        ),
    ]
    if args.kind != "brits":  # the forest with every tree, as before it was sized on validation, first
        variants.insert(
            len(variants) - 2,
            (f"{args.steps} steps, {args.kind}, every tree", args.steps, args.hidden, "predict", 1, 0.0),
        )
    base = None
    print(
        f"full tile {args.size} x {args.size} px ({px:,} px), {BANDS} bands, 35 % of steps cloudy, "
        f"{args.threads} threads"
    )
    print(
        f"{'variant':<34} {'hidden':>6} {'trees':>5} {'device':<24} {'wall s':>8} {'px/s':>10} {'peak RSS':>9} "
        f"{'vs base':>8}"
    )
    for name, steps, hidden, path, parts, tolerance in variants:
        jobs = [
            common
            | {
                "tree_tolerance": tolerance,
                "steps": steps,
                "hidden": hidden,
                "path": path,
                "part": k,
                "parts": parts,
                "threads": args.threads if parts == 1 else per_worker,
                "kind": args.kind if path == "predict" else "brits",
            }
            for k in range(parts)
        ]
        with ThreadPoolExecutor(max_workers=parts) as pool:
            runs = list(pool.map(lambda job: measure("abundance_inference", "run", job), jobs))
        seconds = max(r["result"]["seconds"] for r in runs)
        assert sum(r["result"]["pixels"] for r in runs) == px
        base = base or seconds
        rss = max(r["peak_rss_mib"] for r in runs)
        print(
            f"{name:<34} {hidden:>6} {runs[0]['result']['trees'] or '':>5} {runs[0]['result']['device']:<24} "
            f"{seconds:>8.1f} {px / seconds:>10,.0f} "
            f"{rss:>5.0f} MiB {base / seconds:>7.2f}x",
            flush=True,
        )
    print("goal: a full tile at 46 steps in <= 120 s on 2 CPU cores")


if __name__ == "__main__":
    main()
