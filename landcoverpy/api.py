"""The Python API, for notebooks and scripts: the same workflow as the command line.

>>> from landcoverpy import Workflow
>>> wf = Workflow.from_env()                     # MINIO_*, MONGO_*, DASK_* ... from the environment
>>> result = wf.run("dataset.csv", "seasons.json", "lc_labels.json", "sl_labels.json",
...                 provider="local", source="products/")
>>> wf.classify(["30SUF"])                       # with the model the settings identify
>>> categories = wf.open_map("30SUF")           # an xarray.DataArray (rioxarray), names in attrs

Every method that writes holds the catalog's run lease, as the commands do; settings are one
:class:`~landcoverpy.config.Settings` object, read from the environment by :meth:`from_env` or
given explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rioxarray
import xarray

from landcoverpy import services
from landcoverpy.assets import lookup
from landcoverpy.config import Settings, load_settings
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError, ModelError
from landcoverpy.inputs import load_inputs, load_points
from landcoverpy.pipeline.workflow import resolve_tiles
from landcoverpy.presets import apply_preset
from landcoverpy.records import MapRecord
from landcoverpy.sentinel2 import normalise_tile
from landcoverpy.session import session
from landcoverpy.sources.registry import make_provider


class Workflow:
    """Runs landcoverpy's stages on the configured store, catalog and Dask cluster."""

    def __init__(self, settings: Settings, progress: bool = False) -> None:
        self.settings = settings
        self.progress = progress

    @classmethod
    def from_env(cls, progress: bool = False, **overrides: Any) -> Workflow:
        """Settings from the environment and ``.env`` (as the command line reads them), with
        ``overrides`` (for example ``MODEL_TYPE="lightgbm"``)."""
        return cls(load_settings(**overrides), progress)

    def _inputs(self, dataset: str | Path, seasons: str | Path, lc_labels: str | Path, sl_labels: str | Path) -> Any:

        return load_inputs(
            dataset,
            seasons,
            lc_labels,
            sl_labels,
            self.settings.LC_PROPERTY,
            self.settings.SL_PROPERTY,
            self.settings.SEASON_SPLIT == "monthly",
            self.settings.MAX_PIXELS_PER_POLYGON,
        )

    def run(
        self,
        dataset: str | Path,
        seasons: str | Path,
        lc_labels: str | Path,
        sl_labels: str | Path,
        provider: str = "local",
        source: str | Path | None = None,
        tiles: list[str] | None = None,
        output_dir: str | Path | None = None,
        holdout: str | Path | None = None,
        wait: bool = False,
        change_from: str | None = None,
        model: str | None = None,
    ) -> Any:
        """acquire -> composite -> dataset -> train -> classify; returns the
        :class:`~landcoverpy.pipeline.workflow.RunResult` (maps, model, metrics, problems). With
        ``output_dir``, the maps, styles, report and STAC catalog are exported there. With
        ``change_from`` (an earlier map or run id), the change from its maps to this run's
        (``RunResult.changes``); with ``model`` (a hierarchy id), that model classifies these
        seasons instead of one trained from the points."""
        inputs = self._inputs(dataset, seasons, lc_labels, sl_labels)
        settings = apply_preset(self.settings, inputs.seasons)
        prov = make_provider(provider, settings, Path(source) if source else None)
        held = load_points(holdout, inputs.lc_labels, inputs.sl_labels) if holdout else None
        wanted = resolve_tiles(tiles, inputs) if tiles else None
        out = Path(output_dir) if output_dir is not None else None
        with session(settings, "python: Workflow.run", wait) as ctx:
            return services.run(
                ctx, inputs, prov, wanted, held, out, self.progress, change_from=change_from, model=model
            ).result

    def classify(self, tiles: list[str], model: str | None = None, wait: bool = False) -> dict[str, MapRecord]:
        """Classify ``tiles`` with ``model`` (a hierarchy id), by default the newest model trained
        with the current settings; seasons and labels come from the model's record. Returns the
        map record of each classified tile."""
        with session(self.settings, "python: Workflow.classify", wait) as ctx:
            outcome = services.classify_tiles(ctx, tiles, None, model, progress=self.progress)
        services.require_some_maps(outcome)
        return outcome.maps

    def maps(self, tile: str | None = None) -> list[MapRecord]:
        """Catalogued classification maps (of ``tile``), most recently used first."""
        with Context.open(self.settings) as ctx:
            return lookup.maps_of(ctx, tile)

    def open_map(self, tile: str, level: str = "classification", map_id: str | None = None) -> Any:
        """A map as an ``xarray.DataArray`` (rioxarray: CRS, transform, nodata), read into memory;
        ``attrs["classes"]`` maps values to class names. ``level`` is ``classification``,
        ``sl_classification`` or ``confidence``; by default the tile's most recently used map."""

        records = [r for r in self.maps(normalise_tile(tile)) if map_id is None or r.id == map_id]
        if not records:
            raise ModelError(
                f"no map of tile {tile}"
                + (f" with id {map_id}" if map_id else "")
                + ": run `Workflow.run` or `Workflow.classify` first"
            )
        rec = records[0]
        if level not in rec.outputs:
            raise InputValidationError(f"level {level!r}: choose one of {', '.join(rec.outputs)}")
        loc = rec.outputs[level]
        with Context.open(self.settings) as ctx:
            with ctx.store.rasterio_env():
                opened = rioxarray.open_rasterio(ctx.store.raster_uri(loc.bucket, loc.key), cache=False)
                if not isinstance(opened, xarray.DataArray):  # one single-band COG gives one DataArray
                    raise InputValidationError(f"{loc.key}: not a single raster")
                array = opened.load()
        array = array.squeeze("band", drop=True)
        array.name = level
        array.attrs |= {
            "map_id": rec.id,
            "tile": rec.tile,
            "hierarchy": rec.hierarchy,
            "classes": {v: n for n, v in rec.class_values(level).items()},
        }
        return array
