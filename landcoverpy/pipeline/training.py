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
import json
import logging
import platform
from typing import Any

import joblib
import numpy as np
import pandas as pd

from landcoverpy import __version__
from landcoverpy.context import Context
from landcoverpy.errors import ModelError
from landcoverpy.inputs import LabelSet
from landcoverpy.models.hierarchical import Hierarchy, ModelParams, TrainedModel, train_hierarchy
from landcoverpy.pipeline.datasets import load_table
from landcoverpy.reports import confusion_matrix_frame, confusion_matrix_png
from landcoverpy.storage import join_key, safe_key_part

log = logging.getLogger(__name__)


def model_params(settings: Any) -> ModelParams:
    return ModelParams(model_type=settings.MODEL_TYPE, n_estimators=settings.N_ESTIMATORS,
                       max_depth=settings.MAX_DEPTH, block_km=settings.SPATIAL_BLOCK_KM,
                       folds=settings.CV_FOLDS, seed=settings.RANDOM_SEED)


def library_versions() -> dict[str, str]:
    import lightgbm
    import rasterio
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__, "lightgbm": lightgbm.__version__, "rasterio": rasterio.__version__,
            "landcoverpy": __version__}


def hierarchy_id(dataset_id: str, params: ModelParams, lc: LabelSet, sl: LabelSet, subcategories: bool) -> str:
    payload = json.dumps({"dataset": dataset_id, "params": params.to_dict(), "lc": lc.values, "sl": sl.values,
                          "sub": subcategories, "format": 1}, sort_keys=True)
    return f"hierarchy-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def _store_model(ctx: Context, model: TrainedModel, hid: str, dataset: dict[str, Any]) -> dict[str, Any]:
    bucket = ctx.settings.MINIO_BUCKET_MODELS
    name = "category" if model.level == "category" else f"subcategory_{safe_key_part(model.category or '')}"
    prefix = join_key(hid, name)
    buf = io.BytesIO()
    joblib.dump(model.estimator, buf, compress=3)
    model_bytes = buf.getvalue()
    metadata = {
        "level": model.level, "category": model.category, "features": model.features, "classes": model.classes,
        "label_values": model.label_values, "params": model.params, "metrics": model.metrics,
        "baseline_majority": model.baseline, "training_table_sha256": dataset["table_sha256"],
        "dataset_id": dataset["_id"], "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "library_versions": library_versions(),
    }
    ctx.store.put_bytes(bucket, join_key(prefix, "model.joblib"), model_bytes)
    ctx.store.put_json(bucket, join_key(prefix, "metadata.json"), metadata)
    ctx.store.put_json(bucket, join_key(prefix, "metrics.json"), {"model": model.metrics, "baseline_majority": model.baseline})
    ctx.store.put_bytes(bucket, join_key(prefix, "confusion_matrix.csv"),
                        confusion_matrix_frame(model.metrics).to_csv().encode())
    title = f"{model.level} model" + (f" ({model.category})" if model.category else "")
    ctx.store.put_bytes(bucket, join_key(prefix, "confusion_matrix.png"), confusion_matrix_png(model.metrics, title))
    imp = pd.Series(model.importances, name="importance").sort_values(ascending=False)
    ctx.store.put_bytes(bucket, join_key(prefix, "feature_importances.csv"), imp.rename_axis("feature").to_csv().encode())
    record = {
        "_id": f"{hid}:{name}", "hierarchy": hid, "level": model.level, "category": model.category,
        "bucket": bucket, "prefix": prefix, "key": join_key(prefix, "model.joblib"),
        "features": model.features, "classes": model.classes, "label_values": model.label_values,
        "metrics": {k: model.metrics[k] for k in ("overall_accuracy", "kappa", "macro_f1", "n")},
        "baseline_macro_f1": model.baseline["macro_f1"],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    ctx.catalog.upsert("models", record)
    return record


def train(ctx: Context, dataset: dict[str, Any], lc: LabelSet, sl: LabelSet,
          params: ModelParams | None = None, subcategories: bool = True) -> tuple[dict[str, Any], bool]:
    """Train (or reuse) the hierarchy for ``dataset``; returns its record and whether it was reused."""
    params = params or model_params(ctx.settings)
    hid = hierarchy_id(dataset["_id"], params, lc, sl, subcategories)
    existing = ctx.catalog.get("models", hid)
    if existing is not None:
        log.info("models %s already trained, reused", hid)
        return existing, True
    table = load_table(ctx, dataset)
    hierarchy: Hierarchy = train_hierarchy(table, dataset["features"], lc, sl, params, subcategories)
    cat_rec = _store_model(ctx, hierarchy.category_model, hid, dataset)
    sub_recs = {cat: _store_model(ctx, m, hid, dataset)["_id"] for cat, m in hierarchy.subcategory_models.items()}
    record = {
        "_id": hid, "level": "hierarchy", "category": None, "dataset_id": dataset["_id"],
        "features": dataset["features"], "category_model": cat_rec["_id"],
        "category_values": {c: lc.value(c) for c in lc.values},
        "subcategory_models": {str(lc.value(c)): rid for c, rid in sub_recs.items()},
        "direct": {str(lc.value(c)): v for c, v in hierarchy.direct.items()},
        "lc_labels": lc.values, "sl_labels": sl.values, "params": params.to_dict(),
        "metrics": {"category": cat_rec["metrics"], "category_baseline_macro_f1": cat_rec["baseline_macro_f1"],
                    "subcategory": {c: hierarchy.subcategory_models[c].metrics["macro_f1"] for c in sub_recs}},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": __version__,
    }
    ctx.catalog.upsert("models", record)
    return record, False


def latest_hierarchy(ctx: Context) -> dict[str, Any]:
    records = ctx.catalog.find("models", {"level": "hierarchy"}, sort=[("created", -1)], limit=1)
    if not records:
        raise ModelError("no trained models in the catalog: run `landcoverpy train` first")
    return records[0]


def load_estimator(ctx: Context, model_record_id: str) -> tuple[Any, dict[str, Any]]:
    rec = ctx.catalog.get("models", model_record_id)
    if rec is None:
        raise ModelError(f"model {model_record_id} is in the hierarchy but not in the catalog")
    with ctx.store.open(rec["bucket"], rec["key"]) as fh:
        est = joblib.load(io.BytesIO(fh.read()))
    if hasattr(est, "n_jobs"):
        est.set_params(n_jobs=1)  # one thread per Dask task; the cluster gives the parallelism
    return est, rec
