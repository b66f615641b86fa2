"""Abundance datasets and models as assets: their ids, where their files live, their catalog
records, saving and loading. The one place the abundance stages (train, predict, impute) get a
dataset or a model from."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import joblib
import numpy as np
import pandas as pd

from landcoverpy import __version__, records
from landcoverpy.assets import ids, keys, lookup
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError, ModelError
from landcoverpy.models.abundance import FOREST_KINDS, NETWORK_KINDS, AbundanceModel, Normalisation, TrainParams
from landcoverpy.models.brits import BRITSAbundance
from landcoverpy.records import (
    AbundanceDatasetRecord,
    AbundanceModelMeta,
    AbundanceModelRecord,
    LoadedAbundanceModel,
)
from landcoverpy.storage import join_key
from landcoverpy.timesteps import step_of_record


def load_dataset(ctx: Context, dataset_id: str | None) -> tuple[pd.DataFrame, AbundanceDatasetRecord]:
    record = lookup.abundance_dataset(ctx, dataset_id)
    if record is None:
        raise InputValidationError("no abundance dataset in the catalog: run `landcoverpy abundance dataset` first")
    with ctx.store.open(record.bucket, record.key) as fh:
        return pd.read_parquet(io.BytesIO(fh.read())), record


def model_id_for(level: str, dataset: AbundanceDatasetRecord, params: TrainParams, base: str | None) -> str:
    """Threads and device do not change what is learnt; every other training setting does."""
    return ids.abundance_model_id(level, dataset.id, params.identity(), base)


def save_model(
    ctx: Context,
    model: AbundanceModel,
    level: str,
    dataset: AbundanceDatasetRecord,
    base: str | None = None,
    params: TrainParams | None = None,
) -> AbundanceModelRecord:
    import torch

    blobs: dict[str, bytes] = {}  # file name -> bytes: the network and/or the forest of the model's kind
    if model.kind in NETWORK_KINDS:
        buf = io.BytesIO()
        torch.save({"state_dict": model.network.state_dict(), "config": model.network.config}, buf)
        blobs["model.pt"] = buf.getvalue()
    if model.kind in FOREST_KINDS:
        buf = io.BytesIO()
        joblib.dump(model.forest, buf, compress=3)
        blobs["model.joblib"] = buf.getvalue()
    digest = hashlib.sha256()
    for name in sorted(blobs):
        digest.update(blobs[name])
    mid = model_id_for(
        level, dataset, params or TrainParams(**{k: v for k, v in model.params.items() if k != "forest_fill"}), base
    )
    bucket = ctx.settings.MINIO_BUCKET_MODELS
    prefix = keys.abundance_model_prefix(mid)
    meta = AbundanceModelMeta(
        level=level,
        kind=model.kind,
        files=sorted(blobs),
        classes=model.classes,
        sub_classes=model.sub_classes,
        parents=model.parents,
        feature_names=model.feature_names,
        ancillary_names=model.ancillary_names,
        times=model.times,
        params=model.params,
        normalisation=model.normalisation.__dict__,
        metrics=model.metrics,
        history=model.history,
        dataset_id=dataset.id,
        step=step_of_record(dataset.to_doc()),
        steps=dataset.steps,
        base_model=base,
        library_versions={"torch": torch.__version__, "numpy": np.__version__, "landcoverpy": __version__},
    )
    for name, blob in blobs.items():
        ctx.store.put_bytes(bucket, join_key(prefix, name), blob)
    ctx.store.put_json(bucket, join_key(prefix, "metadata.json"), meta.to_doc())
    ctx.store.put_json(bucket, join_key(prefix, "metrics.json"), model.metrics)
    record = AbundanceModelRecord(
        id=mid,
        level=f"abundance-{level}",
        category=None,
        bucket=bucket,
        prefix=prefix,
        kind=model.kind,
        model_sha256=digest.hexdigest(),
        params=model.params,
        classes=model.all_classes,
        dataset_id=dataset.id,
        base_model=base,
        step=meta.step,
        metrics={k: model.metrics["model"][k] for k in ("rmse", "mae", "r2", "dominant_accuracy")},
        baseline_rmse=model.metrics["mean_abundance_baseline"]["rmse"],
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    return records.store(ctx.catalog, record)


def load_model(ctx: Context, level: str, model_id: str | None = None) -> tuple[AbundanceModel, LoadedAbundanceModel]:
    """The model ``model_id``, or the newest that estimates ``level`` (a model of both levels
    serves N1 and N2)."""
    import torch

    record = lookup.abundance_model(ctx, level, model_id)
    if record is None:
        raise ModelError(
            f"no abundance model {model_id or 'for level ' + level} in the catalog: "
            f"run `landcoverpy abundance train --level {level}`"
        )
    meta = AbundanceModelMeta.model_validate(
        ctx.store.get_json(record.bucket, join_key(record.prefix, "metadata.json"))
    )
    kind = meta.kind
    blobs = {}
    for name in meta.file_names:
        with ctx.store.open(record.bucket, join_key(record.prefix, name)) as fh:
            blobs[name] = fh.read()
    network = forest = None
    if kind in FOREST_KINDS:
        forest = joblib.load(io.BytesIO(blobs["model.joblib"]))
    if kind in NETWORK_KINDS:
        saved = torch.load(io.BytesIO(blobs["model.pt"]), map_location="cpu", weights_only=True)
        network = BRITSAbundance(**saved["config"])
        network.load_state_dict(saved["state_dict"])
    model = AbundanceModel(
        network=network,
        normalisation=Normalisation(**meta.normalisation),
        classes=meta.classes,
        feature_names=meta.feature_names,
        ancillary_names=meta.ancillary_names,
        times=meta.times,
        params=meta.params,
        history=meta.history,
        metrics=meta.metrics,
        sub_classes=meta.sub_classes,
        parents=meta.parents,
        kind=kind,
        forest=forest,
        step=meta.step,
    )
    return model, LoadedAbundanceModel(
        record=record,
        steps=meta.steps,
        step=meta.step or step_of_record(meta.to_doc()),
        dataset_id=meta.dataset_id,
        model_level=meta.level,
    )
