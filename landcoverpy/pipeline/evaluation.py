"""Accuracy of finished maps at held-out labelled points (never used in training)."""

from __future__ import annotations

from typing import Any

import numpy as np

from landcoverpy.assets.map_values import sample_map
from landcoverpy.context import Context
from landcoverpy.inputs import LabelledPoints
from landcoverpy.models.metrics import classification_metrics
from landcoverpy.records import MapRecord
from landcoverpy.sentinel2 import tile_of


def holdout_accuracy(
    ctx: Context,
    maps: dict[str, MapRecord],
    holdout: LabelledPoints,
    lc_labels: dict[str, int],
    sl_labels: dict[str, int],
) -> dict[str, Any]:
    """Category and subcategory metrics of the maps at the held-out points that fall on a map."""
    frame = holdout.frame.copy()
    frame["tile"] = [tile_of(la, lo) for la, lo in zip(frame["latitude"], frame["longitude"])]
    cat_true, cat_pred, sub_true, sub_pred = [], [], [], []
    lc_names = {v: k for k, v in lc_labels.items()}
    sl_names = {v: k for k, v in sl_labels.items()} | {1: "not classified", 0: "nodata"}
    for tile, pts in frame.groupby("tile"):
        rec = maps.get(str(tile))
        if rec is None:
            continue
        cats = sample_map(ctx, rec, "classification", pts)
        subs = sample_map(ctx, rec, "sl_classification", pts)
        for (_, pt), c, s in zip(pts.iterrows(), cats, subs):
            if c == 0:
                continue
            cat_true.append(pt["category"])
            cat_pred.append(lc_names.get(int(c), str(c)))
            if pt["subcategory"]:
                sub_true.append(pt["subcategory"])
                sub_pred.append(sl_names.get(int(s), str(s)))
    if not cat_true:
        return {"n": 0}
    cat_labels = sorted(set(cat_true) | set(cat_pred))
    sub_labels = sorted(set(sub_true) | set(sub_pred))
    return {
        "n": len(cat_true),
        "category": classification_metrics(np.array(cat_true), np.array(cat_pred), cat_labels),
        "subcategory": classification_metrics(np.array(sub_true), np.array(sub_pred), sub_labels) if sub_true else None,
    }
