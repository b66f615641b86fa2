"""Parameter records whose values are part of asset ids.

Each record says which of its fields change an asset's content (``identity()``) and which do not
(window sizes, thread counts: windowed == whole, threaded == serial, both tested). Settings map to
records in one place, here, so the stage that builds an asset and the stage that looks it up can
never disagree about the parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from landcoverpy.assets.ids import SAMPLES_FORMAT, SERIES_FORMAT
from landcoverpy.config import parse_percentiles
from landcoverpy.raster.indices import INDICES
from landcoverpy.raster.masks import MaskSettings
from landcoverpy.raster.timeseries import FEATURES, SPIKE_DELTA, sample_layers
from landcoverpy.sentinel2 import COMPOSITE_BANDS


@dataclass(frozen=True)
class CompositeParams:
    """How a tile x season composite is made."""

    window_size: int = 1024  # pixels per window side: not part of the identity
    threads: int = 1  # windows computed concurrently inside one task: not part of the identity
    bands: tuple[str, ...] = tuple(COMPOSITE_BANDS)
    indices: tuple[str, ...] = tuple(INDICES)
    mask: MaskSettings = field(default_factory=MaskSettings)
    max_products: int = 10  # products per composite, best first (selects the inputs)
    percentiles: tuple[int, ...] = ()  # per-band percentile layers besides the median, e.g. (10, 90)
    timeseries: bool = False  # NDVI amplitude, slope and peak day over every valid date of the season
    series_samples: int = 0  # NDVI interpolated at this many evenly spaced days of the season (0 = none)
    # series layers: a date whose NDVI is this much below both valid neighbours is a gap (0 = keep all)
    series_spike: float = SPIKE_DELTA
    # ... compared, at the season's edges, with products up to this many days outside it (0 = none);
    # not part of the identity: the neighbours found enter the composite id themselves
    series_margin: int = 30
    # a pixel without any valid observation in the season takes its median (and percentiles) from
    # those neighbours' valid observations instead of no data (valid_count stays 0 there)
    gap_fill: bool = False

    def __post_init__(self) -> None:
        if self.series_samples == 1 or self.series_samples < 0:
            raise ValueError(f"series_samples must be 0 (none) or at least 2, got {self.series_samples}")
        if not 0 <= self.series_spike < 1:
            raise ValueError(f"series_spike must be in [0, 1), got {self.series_spike}")
        if self.series_margin < 0:
            raise ValueError(f"series_margin must be >= 0 days, got {self.series_margin}")

    def identity(self) -> dict[str, Any]:
        """What changes the composite's pixels. The chosen products enter the id separately."""
        out: dict[str, Any] = {"bands": list(self.bands), "indices": list(self.indices), "mask": self.mask.to_dict()}
        if self.percentiles:  # absent when unused: composites made before keep their ids
            out["percentiles"] = list(self.percentiles)
        if self.timeseries:
            out["timeseries"] = SERIES_FORMAT
        if self.series_samples:
            out["series_samples"] = self.series_samples
            out["samples_format"] = SAMPLES_FORMAT
        if self.series_layers() and self.series_spike:
            out["series_spike"] = self.series_spike
        if self.gap_fill:
            out["gap_fill"] = "neighbours"
        return out

    def series_layers(self) -> list[str]:
        """Layers computed from every valid date of the season (not from the median composite)."""

        return (list(FEATURES) if self.timeseries else []) + sample_layers(self.series_samples)

    def band_layers(self, band: str | None = None) -> list[str]:
        """Reflectance layers (stored as uint16 x 10000): each band's median, then its percentiles
        (``B04_p10``...); for one ``band`` or all."""
        bands = [band] if band else list(self.bands)
        return [b for b in bands] + [f"{b}_p{q}" for b in bands for q in self.percentiles]

    def layers(self) -> list[str]:
        """Every feature layer of a season, in feature order."""
        return self.band_layers() + list(self.indices) + self.series_layers()

    def to_dict(self) -> dict[str, Any]:
        return self.identity() | {
            "window_size": self.window_size,
            "threads": self.threads,
            "max_products": self.max_products,
            "percentiles": list(self.percentiles),
            "timeseries": self.timeseries,
            "series_samples": self.series_samples,
            "series_spike": self.series_spike,
            "series_margin": self.series_margin,
            "gap_fill": self.gap_fill,
            "layers": self.layers(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompositeParams:
        """Inverse of :meth:`to_dict` (a model's record keeps the parameters of its composites)."""
        mask = dict(d.get("mask") or {})
        if "scl_classes" in mask:
            mask["scl_classes"] = tuple(mask["scl_classes"])
        defaults = cls()
        return cls(
            window_size=int(d.get("window_size", defaults.window_size)),
            threads=int(d.get("threads", defaults.threads)),
            bands=tuple(d.get("bands", defaults.bands)),
            indices=tuple(d.get("indices", defaults.indices)),
            mask=MaskSettings(**mask) if mask else defaults.mask,
            max_products=int(d.get("max_products", defaults.max_products)),
            percentiles=tuple(int(q) for q in d.get("percentiles", ())),
            timeseries=bool(d.get("timeseries", False)),
            series_samples=int(d.get("series_samples", 0)),
            series_spike=float(d.get("series_spike", 0.0)),  # records made before: no spike removal
            series_margin=int(d.get("series_margin", 0)),
            gap_fill=bool(d.get("gap_fill", False)),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> CompositeParams:
        return cls(
            window_size=settings.COMPOSITE_WINDOW_SIZE,
            threads=settings.COMPOSITE_THREADS,
            mask=MaskSettings(
                dilation_pixels=settings.MASK_DILATION_PIXELS,
                cloud_probability_threshold=settings.CLOUD_PROBABILITY_THRESHOLD,
            ),
            max_products=settings.MAX_PRODUCTS_COMPOSITE,
            percentiles=parse_percentiles(settings.COMPOSITE_PERCENTILES),
            timeseries=settings.TIMESERIES_FEATURES,
            series_samples=settings.SERIES_SAMPLES,
            series_spike=settings.SERIES_SPIKE,
            series_margin=settings.SERIES_SPIKE_MARGIN,
            gap_fill=settings.COMPOSITE_GAP_FILL,
        )


@dataclass(frozen=True)
class ModelParams:
    """How the hierarchical classifier is trained."""

    model_type: str = "random_forest"
    n_estimators: int = 100
    max_depth: int | None = None
    block_km: float = 2.0
    folds: int = 5
    seed: int = 42
    min_samples_leaf: int = 1  # random forest: smallest leaf (larger = smaller, smoother trees)
    num_leaves: int = 31  # LightGBM: leaves per tree
    learning_rate: float = 0.1  # LightGBM
    class_weighting: str = "balanced"  # balanced | sqrt | none: how much rare classes weigh in fitting
    min_class_points: int = 5  # classes labelled at fewer points are left out, and said so
    threads: int = 0  # training threads, 0 = automatic (see :meth:`training_threads`); not identity
    # random forest: keep the fewest trees (of n_estimators) whose spatial-CV accuracy, kappa and
    # macro F1 are within this of the whole forest's; 0 keeps every tree
    tree_tolerance: float = 0.01

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "threads"}

    def to_dict(self) -> dict[str, Any]:
        return self.identity()

    def training_threads(self) -> int:
        """Threads for fitting: the setting when given; otherwise every core for random forests
        (joblib threads that idle cheaply) but one for LightGBM, whose OpenMP threads spin-wait
        and collapse when the cores are busy (Dask workers, other fits): one thread keeps it
        within the random forest's time."""
        if self.threads > 0:
            return self.threads
        return -1 if self.model_type == "random_forest" else 1

    @classmethod
    def from_settings(cls, settings: Any) -> ModelParams:
        return cls(
            model_type=settings.MODEL_TYPE,
            n_estimators=settings.N_ESTIMATORS,
            max_depth=settings.MAX_DEPTH,
            block_km=settings.SPATIAL_BLOCK_KM,
            folds=settings.CV_FOLDS,
            seed=settings.RANDOM_SEED,
            class_weighting=settings.CLASS_WEIGHTING,
            min_class_points=settings.MIN_CLASS_POINTS,
            threads=settings.TRAIN_THREADS,
            tree_tolerance=settings.TREE_TOLERANCE,
        )


# Feature prefix of the terrain layers; a season may not take this name (inputs.py refuses it).
DEM_FEATURE_PREFIX = "dem"
