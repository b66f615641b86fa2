"""Abundance models on real labelled MODIS series: the 1,218 MOD13Q1 NDVI samples of Mato Grosso
(Brazil) that the sits R package distributes as ``data/samples_modis_ndvi.rda`` (classes Cerrado,
Forest, Pasture, Soy_Corn; 12 NDVI values per sample, one every 32 days of an agricultural year,
years 2000-2016). Each sample is one pixel whose fractions are its class (1 for its label, 0 for
the others), so the dominant class of an estimate is a classification: the measure the abundance
issue quotes (BRITS 0.83 overall accuracy against 0.90 for a 100-tree random forest, 80/20).

Every model sees the same inputs (the NDVI series and the sample's longitude/latitude as
ancillaries; with ``--no-coordinates`` the series alone) and the same split:

- the mean-abundance baseline (the training samples' mean fractions everywhere);
- the abundance models of the workflow (``train_abundance``, model_type auto): BRITS, the forest
  regression, their ensemble and the default (chosen on validation samples of the training side);
- a plain 100-tree random-forest classifier (scikit-learn) on the series and the ancillaries, the
  issue's reference, trained on the whole training side.

Two splits per seed: ``random`` (80/20 over samples, as the issue measured) and ``spatial``
(whole ``--block-deg`` degree cells held out, so test samples are never beside training ones).

    python benchmarks/abundance_sits.py --data PATH/samples_modis_ndvi.rda [--seeds 0 1 2 3 4]
                                        [--splits random spatial] [--block-deg 0.5] [--no-coordinates]
                                        [--loss cross_entropy|mse]

The file is not part of this project (GPL-2, sits): clone https://github.com/e-sensing/sits or
download that one file. Reading it needs the ``rdata`` package (``pip install rdata``).
One JSON line per (split, seed), then a summary line with the mean dominant-class accuracy and
RMSE of each model per split.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("baseline", "brits", "forest", "ensemble", "default", "rf_classifier")


def load_samples(path: Path):  # -> AbundanceData
    """The sits tibble as AbundanceData: (N, 12, 1) NDVI series, (N, 2) longitude/latitude as
    ancillaries, one-hot fractions, one block per sample (the split replaces them)."""
    from landcoverpy.models.abundance import AbundanceData

    try:
        import rdata
    except ImportError:
        sys.exit("reading an .rda file needs the rdata package: pip install rdata")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns for every R class it maps to a data frame
        frame = next(iter(rdata.read_rda(str(path)).values()))
    days = [np.asarray(ts["Index"], dtype="float64") for ts in frame["time_series"]]
    offsets = np.stack([d - d[0] for d in days])  # days into the series (leap years shift them by one)
    if np.ptp(offsets, axis=0).max() > 2:
        sys.exit(f"{path}: the samples' dates are not on one calendar (offsets differ by more than 2 days)")
    series = np.stack([np.asarray(ts["NDVI"], dtype="float32") for ts in frame["time_series"]])[:, :, None]
    classes = sorted(str(v) for v in frame["label"].unique())
    labels = np.array([classes.index(str(v)) for v in frame["label"]])
    fractions = np.eye(len(classes), dtype="float32")[labels]
    ancillary = frame[["longitude", "latitude"]].to_numpy("float32")
    times = np.median(offsets, axis=0).astype("float32")
    times = times / float(np.median(np.diff(times)))  # one step = 1, as the workflow's series
    return AbundanceData(series, ancillary, fractions, np.arange(len(series)), classes, times)


def blocks_for(split: str, block_deg: float, lonlat: np.ndarray) -> np.ndarray:
    """One block per sample (random split) or per ``block_deg`` cell of longitude/latitude."""
    if split == "random":
        return np.arange(len(lonlat))
    cells = np.floor(lonlat / block_deg).astype(int)
    return cells[:, 0] * 10_000 + cells[:, 1]


def main() -> None:
    from sklearn.ensemble import RandomForestClassifier

    from landcoverpy.models.abundance import LOSSES, TrainParams, abundance_metrics, spatial_split, train_abundance

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="samples_modis_ndvi.rda of the sits package")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--splits", nargs="+", choices=("random", "spatial"), default=["random", "spatial"])
    ap.add_argument(
        "--block-deg",
        type=float,
        default=0.5,
        help="spatial split: cell size in degrees (the 131 Forest samples share one cell at 0.25 to 1 "
        "degree; at 0.5 they stay on the training side for seeds 0-4)",
    )
    ap.add_argument(
        "--no-coordinates", action="store_true", help="no ancillaries: every model sees the NDVI series alone"
    )
    ap.add_argument("--threads", type=int, default=0, help="as TrainParams.threads (0: one for the network)")
    ap.add_argument("--hidden", type=int, default=TrainParams.hidden)
    ap.add_argument(
        "--loss", choices=LOSSES, default=TrainParams.loss, help="BRITS's training error (default: the workflow's)"
    )
    args = ap.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file (samples_modis_ndvi.rda from the sits package's data folder)")
    logging.basicConfig(level=logging.WARNING)
    data = load_samples(args.data)
    lonlat = data.ancillary.copy()
    if args.no_coordinates:
        data.ancillary = data.ancillary[:, :0]
    truth = data.fractions.argmax(axis=1)
    x = np.concatenate([data.series[:, :, 0], data.ancillary], axis=1)  # the classifier's inputs
    rows = []
    for split in args.splits:
        data.blocks = blocks_for(split, args.block_deg, lonlat)
        for seed in args.seeds:
            params = TrainParams(
                hidden=args.hidden,
                seed=seed,
                threads=args.threads,
                test_fraction=0.2,
                model_type="auto",
                loss=args.loss,
            )
            started = time.perf_counter()
            _, metrics = train_abundance(data, params)
            seconds = time.perf_counter() - started
            train_idx, test_idx = spatial_split(data.blocks, params.test_fraction, params.seed)  # train_abundance's
            rf = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)
            rf.fit(x[train_idx], truth[train_idx])
            proba = rf.predict_proba(x[test_idx])
            rf_scores = abundance_metrics(data.fractions[test_idx], proba, data.classes)
            c = metrics["candidates"]
            scores = {
                k: {"oa": round(c[k]["N1"]["dominant_accuracy"], 4), "rmse": round(c[k]["N1"]["rmse"], 4)}
                for k in ("brits", "forest", "ensemble")
            }
            scores["default"] = scores[metrics["model_type"]]
            b = metrics["baseline_levels"]["N1"]
            scores["baseline"] = {"oa": round(b["dominant_accuracy"], 4), "rmse": round(b["rmse"], 4)}
            scores["rf_classifier"] = {
                "oa": round(rf_scores["dominant_accuracy"], 4),
                "rmse": round(rf_scores["rmse"], 4),
            }
            row = {
                "split": split,
                "seed": seed,
                "train": metrics["split"]["train"],
                "validation": metrics["split"]["validation"],
                "test": metrics["split"]["test"],
                "default_kind": metrics["model_type"],
                "epochs": metrics["epochs"],
                **{k: scores[k] for k in MODELS},
                "seconds": round(seconds, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary: dict[str, object] = {
        "summary": True,
        "samples": len(data.series),
        "classes": data.classes,
        "ancillaries": "none" if args.no_coordinates else "longitude, latitude",
        "loss": args.loss,
    }
    for split in args.splits:
        sel = [r for r in rows if r["split"] == split]
        summary[split] = {
            k: {
                "oa": round(float(np.mean([r[k]["oa"] for r in sel])), 4),
                "rmse": round(float(np.mean([r[k]["rmse"] for r in sel])), 4),
            }
            for k in MODELS
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
