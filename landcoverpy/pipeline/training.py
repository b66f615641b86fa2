"""Stage 4: train the hierarchical models and store them with everything the classifier needs.

Per model, in the models bucket: ``model.joblib``, ``metadata.json`` (features in order, classes
and label values, parameters, metrics, hash of the training table, library versions),
``metrics.json``, ``confusion_matrix.csv`` / ``.png``, ``feature_importances.csv``. A hierarchy
record ties the category model to its subcategory models; the classifier loads exactly that.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import platform
from dataclasses import asdict
from typing import Any

import joblib
import lightgbm
import numpy as np
import pandas as pd
import rasterio
import sklearn

from landcoverpy import __version__, records
from landcoverpy.assets import ids, integrity, keys, lookup
from landcoverpy.assets.params import ModelParams
from landcoverpy.context import Context
from landcoverpy.inputs import LabelSet
from landcoverpy.models.hierarchical import Hierarchy, TrainedModel, train_hierarchy
from landcoverpy.models.tuning import tune
from landcoverpy.records import HierarchyRecord, MemberRecord, TrainingDatasetRecord, Trial
from landcoverpy.reports import confusion_matrix_frame, confusion_matrix_png
from landcoverpy.storage import join_key

log = logging.getLogger(__name__)


def model_params(settings: Any) -> ModelParams:
    return ModelParams.from_settings(settings)


def library_versions() -> dict[str, str]:

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "lightgbm": lightgbm.__version__,
        "rasterio": rasterio.__version__,
        "landcoverpy": __version__,
    }


def _store_model(
    ctx: Context, model: TrainedModel, hid: str, dataset: TrainingDatasetRecord, lc: LabelSet
) -> MemberRecord:
    bucket = ctx.settings.MINIO_BUCKET_MODELS
    parent = lc.value(model.category) if model.category is not None else None
    name = keys.member_name(model.level, parent)
    prefix = keys.model_prefix(hid, name)
    buf = io.BytesIO()
    joblib.dump(model.estimator, buf, compress=3)
    model_bytes = buf.getvalue()
    metadata = {
        "level": model.level,
        "category": model.category,
        "features": model.features,
        "classes": model.classes,
        "label_values": model.label_values,
        "params": model.params,
        "metrics": model.metrics,
        "baseline_majority": model.baseline,
        "training_table_sha256": dataset.table_sha256,
        "dataset_id": dataset.id,
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "left_out": model.left_out,
        "library_versions": library_versions(),
    }
    ctx.store.put_bytes(bucket, join_key(prefix, "model.joblib"), model_bytes)
    ctx.store.put_json(bucket, join_key(prefix, "metadata.json"), metadata)
    ctx.store.put_json(
        bucket, join_key(prefix, "metrics.json"), {"model": model.metrics, "baseline_majority": model.baseline}
    )
    ctx.store.put_bytes(
        bucket, join_key(prefix, "confusion_matrix.csv"), confusion_matrix_frame(model.metrics).to_csv().encode()
    )
    title = f"{model.level} model" + (f" ({model.category})" if model.category else "")
    ctx.store.put_bytes(bucket, join_key(prefix, "confusion_matrix.png"), confusion_matrix_png(model.metrics, title))
    imp = pd.Series(model.importances, name="importance").sort_values(ascending=False)
    ctx.store.put_bytes(
        bucket, join_key(prefix, "feature_importances.csv"), imp.rename_axis("feature").to_csv().encode()
    )
    record = MemberRecord(
        id=ids.model_id(hid, model.level, parent),
        hierarchy=hid,
        level=model.level,
        category=model.category,
        category_value=parent,
        bucket=bucket,
        prefix=prefix,
        key=join_key(prefix, "model.joblib"),
        features=model.features,
        classes=model.classes,
        label_values=model.label_values,
        metrics=model.scores.model_dump(include={"overall_accuracy", "kappa", "macro_f1", "n"}),
        baseline_macro_f1=model.baseline_scores.macro_f1,
        left_out=model.left_out,
        trees=int(getattr(model.estimator, "n_estimators", 0)) or None,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    return records.store(ctx.catalog, record)


def trees_note(rec: HierarchyRecord, category: str | None) -> str:
    """ ", 30 of 100 trees" for a random forest sized by its spatial CV (TREE_TOLERANCE), else ""."""
    trees = rec.trees or {}
    kept = trees.get("category") if category is None else (trees.get("subcategory") or {}).get(category)
    of = rec.params.get("n_estimators")
    if not kept or rec.model_type != "random_forest":
        return ""
    return f", {kept} of {of} trees" if kept != of else f", {kept} trees"


def train(
    ctx: Context,
    dataset: TrainingDatasetRecord,
    lc: LabelSet,
    sl: LabelSet,
    params: ModelParams | None = None,
    subcategories: bool = True,
    tune_trials: int = 0,
) -> tuple[HierarchyRecord, bool]:
    """Train (or reuse) the hierarchy for ``dataset``; returns its record and whether it was
    reused. With ``tune_trials``, a search over the model's size and depth (spatial CV) picks
    the parameters first; every trial is kept in the record."""
    params = params or model_params(ctx.settings)
    trials: list[dict[str, Any]] = []
    if tune_trials:
        params, tried = tune(lookup.load_table(ctx, dataset), dataset.features, lc, params, tune_trials, params.seed)
        trials = [asdict(t) for t in tried]
    hid, existing = lookup.hierarchy_for(ctx, dataset.id, params, lc, sl, subcategories)
    if existing is not None and integrity.reusable(ctx, existing):
        log.info("models %s already trained, reused", hid)
        if trials:  # the search chose the parameters of a trained hierarchy: its record keeps this search
            existing = existing.model_copy(update={"tuning": [Trial.model_validate(t) for t in trials]})
            records.save(ctx.catalog, existing)
        return existing, True
    table = lookup.load_table(ctx, dataset)
    hierarchy: Hierarchy = train_hierarchy(table, dataset.features, lc, sl, params, subcategories)
    cat_rec = _store_model(ctx, hierarchy.category_model, hid, dataset, lc)
    sub_recs = {cat: _store_model(ctx, m, hid, dataset, lc) for cat, m in hierarchy.subcategory_models.items()}
    record = HierarchyRecord(
        id=hid,
        level="hierarchy",
        tuning=trials,
        category=None,
        dataset_id=dataset.id,
        features=dataset.features,
        category_model=cat_rec.id,
        category_values={c: lc.value(c) for c in lc.values},
        subcategory_models={str(lc.value(c)): rec.id for c, rec in sub_recs.items()},
        direct={str(lc.value(c)): v for c, v in hierarchy.direct.items()},
        lc_labels=lc.values,
        sl_labels=sl.values,
        params=params.to_dict(),
        left_out={
            "category": hierarchy.category_model.left_out,
            "subcategory": {c: m.left_out for c, m in hierarchy.subcategory_models.items() if m.left_out},
        },
        metrics={
            "category": cat_rec.metrics,
            "category_baseline_macro_f1": cat_rec.baseline_macro_f1,
            "category_per_polygon": polygon_scores(hierarchy.category_model.metrics),
            "subcategory": {c: hierarchy.subcategory_models[c].scores.macro_f1 for c in sub_recs},
        },
        trees={"category": cat_rec.trees, "subcategory": {c: rec.trees for c, rec in sub_recs.items()}},
        composite_params=dataset.composite_params,
        season_defs=dataset.season_defs,
        with_dem=dataset.with_dem,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        code_version=__version__,
    )
    return records.store(ctx.catalog, record), False


def polygon_scores(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The per-polygon scores of a model trained from labelled polygons (None for points)."""
    got = metrics.get("per_polygon")
    if not got:
        return None
    return {k: got[k] for k in ("overall_accuracy", "kappa", "macro_f1")} | {"n": got.get("polygons")}
