"""Benchmark: BRITS abundance model on CPU. Training throughput (samples/s) on generated
mixtures, then inference over one full MODIS tile (2400 x 2400 px, 12 monthly steps x 7 bands,
35 % of values missing, 3 ancillary variables), block by block as `abundance predict` does.

    python benchmarks/abundance_inference.py [--size 2400] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from landcoverpy.models.abundance import AbundanceData, TrainParams, train_abundance

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    steps, bands, classes = 12, 7, 4
    sig = rng.uniform(0.02, 0.5, size=(classes, steps, bands)).astype("float32")

    def sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ab = rng.dirichlet(np.ones(classes) * 0.7, size=n).astype("float32")
        x = np.einsum("nk,ktd->ntd", ab, sig) + rng.normal(0, 0.01, (n, steps, bands)).astype("float32")
        x[rng.uniform(size=(n, steps)) < 0.35] = np.nan
        anc = np.stack([500 + 800 * ab[:, 0], rng.uniform(-6, -1, n), rng.uniform(36, 39, n)], 1).astype("float32")
        return x.astype("float32"), anc, ab

    n_train = 8000
    x, anc, ab = sample(n_train)
    blocks = np.arange(n_train) // 100
    data = AbundanceData(x, anc, ab, blocks, [f"c{k}" for k in range(classes)])
    params = TrainParams(epochs=5, patience=100, batch_size=256, threads=args.threads)
    start = time.perf_counter()
    model, _ = train_abundance(data, params)
    train_seconds = time.perf_counter() - start
    seen = sum(1 for _ in model.history) * int(n_train * 0.72)  # ~72 % of samples are in the fit split
    print(f"training: {len(model.history)} epochs over ~{int(n_train * 0.72)} samples in {train_seconds:.1f} s "
          f"-> {seen / train_seconds:,.0f} samples/s (hidden {params.hidden}, batch {params.batch_size}, "
          f"{args.threads} threads)")

    total = args.size * args.size
    per_block = args.block * args.block
    start = time.perf_counter()
    done = 0
    while done < total:
        n = min(per_block, total - done)
        xb, ab_anc, _ = sample(n)
        out = model.predict(xb, ab_anc, batch_size=8192)
        assert out.shape == (n, classes)
        done += n
    seconds = time.perf_counter() - start
    print(f"inference: {total:,} px ({args.size} x {args.size}, {steps} steps x {bands} bands) in {seconds:.1f} s "
          f"-> {total / seconds:,.0f} px/s; target < 300 s: {'met' if seconds < 300 else 'NOT met'} "
          f"(ratio to target {300 / seconds:.2f}x)")


if __name__ == "__main__":
    main()
