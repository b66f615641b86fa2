"""``abundance impute``: a model's gap-filled series of a dataset's grid as COGs, one per step
(the bands, then a QA band: 0 observed, 1 imputed), stored beside the maps."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
from distributed import as_completed
from rasterio.windows import Window

from landcoverpy import __version__, records
from landcoverpy.assets import ids, keys, publish
from landcoverpy.assets.abundance import load_dataset, load_model
from landcoverpy.context import Context
from landcoverpy.errors import ModelError
from landcoverpy.models.abundance import NETWORK_KINDS, AbundanceModel
from landcoverpy.pipeline.tasks import dask_task
from landcoverpy.progress import step
from landcoverpy.raster.ancillary import ancillary_layers
from landcoverpy.raster.cog import CogWriter
from landcoverpy.raster.grid import Grid, block_windows
from landcoverpy.raster.series import SeriesItem, aggregate_series, load_series_manifest
from landcoverpy.records import MapRecord
from landcoverpy.scratch import scratch_dir
from landcoverpy.storage import open_store
from landcoverpy.timesteps import check_same_steps, step_of_record

log = logging.getLogger(__name__)


@dask_task
def impute_block(
    settings: Any,
    items: list[SeriesItem],
    steps: list[tuple[dt.date, dt.date]],
    ancillary: dict[str, str],
    grid: Grid,
    model: AbundanceModel,
    window: Window,
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, steps, bands) gap-filled series of a window and the observed mask."""

    with open_store(settings, check=False).rasterio_env():
        series = aggregate_series(items, grid, steps, window)
        anc, _ = ancillary_layers(ancillary, grid, window)
    filled = model.impute(series, anc, device=device)
    never = ~np.isfinite(series).any(axis=1, keepdims=True)  # a band never observed: nothing to fill from
    filled = np.where(np.broadcast_to(never, series.shape), np.nan, filled)
    return filled.astype("float32"), np.isfinite(series)


def impute_area(
    ctx: Context,
    output_dir: Path,
    model_id: str | None = None,
    dataset_id: str | None = None,
    block: int = 512,
    client: Any = None,
    progress: bool = False,
    device: str | None = None,
    level: str = "N1",
) -> dict[str, Path]:
    """The model's gap-filled series of a dataset's grid: one COG per step, the bands then a QA
    band (0 observed, 1 imputed, nodata where the pixel has no value at all), stored beside the
    maps and copied to ``output_dir``. BRITS fills gaps from the series and ancillaries; a forest
    model fills them by linear interpolation in time (said in the tags)."""
    model, mrec = load_model(ctx, level, model_id)
    _, drec = load_dataset(ctx, dataset_id)
    check_same_steps(mrec.steps, mrec.step, mrec.id, drec.steps, step_of_record(drec.to_doc()), f"dataset {drec.id}")
    if drec.bands != model.feature_names or drec.ancillary != model.ancillary_names:
        raise ModelError(
            f"dataset {drec.id} has inputs {drec.bands} + {drec.ancillary}; model {mrec.id} "
            f"was trained on {model.feature_names} + {model.ancillary_names}"
        )
    sid = ids.abundance_series_id(mrec.id, drec.id)
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    existing = records.load(ctx.catalog, MapRecord, sid)
    if existing is None:
        grid = Grid.from_dict(drec.grid)
        items = load_series_manifest(drec.manifest or "")
        steps = [(dt.date.fromisoformat(a), dt.date.fromisoformat(b)) for a, b in drec.steps]
        windows = list(block_windows(grid.height, grid.width, block))
        args = (ctx.settings, items, steps, drec.ancillary_sources, grid)
        method = "BRITS" if model.kind in NETWORK_KINDS else "linear interpolation"
        tags = {"model": mrec.id, "dataset": drec.id, "series_id": sid, "gap_filling": method}
        names = [f"series_{i + 1:02d}_{a.isoformat()}.tif" for i, (a, _) in enumerate(steps)]
        outputs: dict[str, Any] = {}
        with scratch_dir(ctx.settings.TMP_DIR) as tmp, contextlib.ExitStack() as stack:
            writers = [
                stack.enter_context(
                    CogWriter(
                        Path(tmp) / name,
                        grid,
                        "float32",
                        count=len(drec.bands) + 1,
                        nodata=float("nan"),
                        descriptions=list(drec.bands) + ["qa: 0 observed, 1 imputed"],
                        tags=tags | {"step_start": a.isoformat(), "step_end": b.isoformat()},
                        overview_resampling="average",
                        tmp_dir=tmp,
                    )
                )
                for name, (a, b) in zip(names, steps)
            ]
            with step(log, "abundance impute", len(windows), "block", progress) as bar:
                if client is not None:
                    fut_model = client.scatter(model, broadcast=True, hash=False)
                    futures = {client.submit(impute_block, *args, fut_model, w, device, pure=False): w for w in windows}
                    pending = as_completed(futures, with_results=True)
                else:
                    pending = ((w, impute_block(*args, model, w, device)) for w in windows)  # type: ignore[assignment]
                for fut, (filled, observed) in pending:
                    w = futures[fut] if client is not None else fut
                    h, wd = int(w.height), int(w.width)
                    for t, writer in enumerate(writers):
                        values = filled[:, t, :]
                        qa = np.where(observed[:, t, :].all(axis=1), 0.0, 1.0)
                        qa = np.where(np.isfinite(values).all(axis=1), qa, np.nan)
                        cube = np.concatenate([values, qa[:, None]], axis=1).T.reshape(-1, h, wd)
                        writer.write(cube.astype("float32"), w)
                    bar.update(1)
            stack.close()
            for name in names:
                outputs[name] = publish.put_file(ctx.store, bucket, keys.abundance_map_key(sid, name), Path(tmp) / name)
        series = MapRecord(
            id=sid,
            tile="abundance",
            kind="abundance-series",
            model=mrec.id,
            dataset=drec.id,
            grid=drec.grid,
            gap_filling=method,
            outputs=outputs,
            bands=list(drec.bands),
            steps=drec.steps,
            created=publish.now_iso(),
            code_version=__version__,
        )
        existing = records.store(ctx.catalog, series)
    else:
        log.info("gap-filled series %s already made by %s from %s, reused", sid, mrec.id, drec.id)
    output_dir.mkdir(parents=True, exist_ok=True)
    return {name: ctx.store.get_file(loc.bucket, loc.key, output_dir / name) for name, loc in existing.outputs.items()}
