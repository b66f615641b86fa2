"""Typed catalog records: one frozen model per kind of document the catalog holds.

Stages and reports read records through attributes; documents (``dict``) exist only where the
catalog stores or returns them (:func:`load`, :func:`find`, :func:`save`). Every document carries
``schema_version``; documents written before it existed (version 1) are migrated on load by
:func:`migrate`, so a catalog written by an older landcoverpy keeps working. Unknown fields are
kept (``extra="allow"``): a record read and saved again loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from landcoverpy.catalog import Catalog, Filter
from landcoverpy.errors import CatalogError
from landcoverpy.raster.grid import Grid
from landcoverpy.sentinel2 import baseline_offset

SCHEMA_VERSION = 2


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True, protected_namespaces=())

    def to_doc(self) -> dict[str, Any]:
        """The document: the fields given or read (defaults not written), by their stored names."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class StoredObject(Model):
    """An object in the store: where it is, and what was recorded about it."""

    bucket: str
    key: str
    size: int | None = None
    sha256: str | None = None


class ProductBand(StoredObject):
    crs: str | None = None
    bounds: list[float] | None = None
    fetched_bytes: int = 0


class MapOutput(StoredObject):
    """A map layer with its companions (quicklook, QGIS style, GDAL names), keys in its bucket."""

    quicklook: str | None = None
    style: str | None = None
    aux: str | None = None
    nodata: float | None = None
    count: int = 1

    def object_keys(self) -> list[str]:
        """The layer's key and its companions' (quicklook, style, GDAL names) that exist."""
        return [self.key] + [c.key for c in self.companions()]

    def companions(self) -> list[Companion]:
        """The companions the layer has: quicklook, QGIS style, GDAL category names."""
        found = (
            ("png", "quicklook", self.quicklook, ".png"),
            ("style", "QGIS style", self.style, ".qml"),
            ("aux", "GDAL category names", self.aux, ".tif.aux.xml"),
        )
        return [Companion(name, label, key, suffix) for name, label, key, suffix in found if key]


@dataclass(frozen=True)
class Companion:
    """A file beside a map layer: its short name, what it is, its key and its file suffix."""

    name: str
    label: str
    key: str
    suffix: str


class Record(Model):
    COLLECTION: ClassVar[str]

    id: str = Field(alias="_id")
    schema_version: int = SCHEMA_VERSION
    created: str | None = None
    code_version: str | None = None


class ProductRecord(Record):
    COLLECTION: ClassVar[str] = "products"

    product_id: str
    tile: str
    sensing_time: str
    level: str
    platform: str | None = None
    processing_baseline: str | None = None
    title: str | None = None
    offsets: dict[str, float] = Field(default_factory=dict)
    cloud_percentage: float | None = None
    nodata_percentage: float | None = None
    useful_percentage: float | None = None
    provider: str | None = None
    bands: dict[str, ProductBand]
    window: dict[str, Any] | None = None
    fetched_bytes: int = 0
    acquired: str | None = None


class CompositeRecord(Record):
    COLLECTION: ClassVar[str] = "composites"

    tile: str
    season: str
    season_start: str
    season_end: str
    products: list[str]
    series_neighbours: list[str] = Field(default_factory=list)
    grid: dict[str, Any]
    bands: dict[str, StoredObject]
    indices: dict[str, StoredObject] = Field(default_factory=dict)
    valid_count: StoredObject
    band_scale: float = 10000.0
    valid_percentage: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    def layers(self) -> dict[str, StoredObject]:
        """Every feature layer (bands, then indices and series layers)."""
        return self.bands | self.indices

    def as_source(self) -> FeatureSource:
        return FeatureSource(
            id=self.id, tile=self.tile, grid=self.grid, bands=self.bands, indices=self.indices, params=self.params
        )


class FeatureSource(Model):
    """What features are read from: a season's composite, or the DEM layers (as ``indices``,
    in ``params["indices"]`` order)."""

    id: str = Field(alias="_id")
    tile: str
    grid: dict[str, Any]
    bands: dict[str, StoredObject] = Field(default_factory=dict)
    indices: dict[str, StoredObject] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def pixel_grid(self) -> Grid:
        return Grid.from_dict(self.grid)

    def layer(self, name: str) -> tuple[StoredObject, bool]:
        """A layer's object and whether it is a (quantised reflectance) band."""
        if name in self.bands:
            return self.bands[name], True
        return self.indices[name], False


class DemRecord(Record):
    COLLECTION: ClassVar[str] = "dems"

    tile: str
    grid: dict[str, Any]
    layers: dict[str, StoredObject]
    sources: list[dict[str, Any]] = Field(default_factory=list)


class DatasetRecord(Record):
    """A table in the store: a training table (``kind`` None) or an abundance dataset (``kind``
    "abundance"); the kinds below type each one's fields."""

    COLLECTION: ClassVar[str] = "datasets"

    kind: str | None = None
    bucket: str
    key: str
    table_sha256: str | None = None


class TrainingDatasetRecord(DatasetRecord):
    """The composites sampled at the labelled points (one row per sampled pixel)."""

    features: list[str]
    seasons: list[str] = Field(default_factory=list)
    composites: list[str] = Field(default_factory=list)
    composite_params: dict[str, Any] | None = None
    season_defs: list[list[str]] | None = None
    with_dem: bool = False
    size: int | None = None
    tiles: list[str] = Field(default_factory=list)
    neighbourhood: int
    n_points: int
    n_samples: int
    dropped_points: list[Any] = Field(default_factory=list)
    class_counts: dict[str, int] = Field(default_factory=dict)
    subclass_counts: dict[str, int] = Field(default_factory=dict)
    source: str | None = None


class AbundanceDatasetRecord(DatasetRecord):
    """MODIS series, ancillaries and (when labelled) class fractions of every coarse pixel."""

    year: int
    step: str | None = None
    steps: list[list[str]]
    bands: list[str]
    parents: dict[str, str] | None = None
    label_weights: dict[str, Any] | None = None
    ancillary: list[str] = Field(default_factory=list)
    ancillary_sources: dict[str, str] = Field(default_factory=dict)
    levels: dict[str, list[str]] = Field(default_factory=dict)
    grid: dict[str, Any]
    manifest: str | None = None
    series_items: int | None = None
    pixels: int
    missing_fraction: float | None = None


class ModelRecord(Record):
    """Any trained model (``level``: category, subcategory, hierarchy or abundance-…); the kinds
    below type each one's fields."""

    COLLECTION: ClassVar[str] = "models"

    level: str
    category: str | None = None


class Scores(Model):
    """Spatial cross-validation scores of one model."""

    overall_accuracy: float
    kappa: float
    macro_f1: float
    n: int | None = None


class MemberRecord(ModelRecord):
    """One model of a hierarchy: the category model or the subcategory model of one category."""

    hierarchy: str
    category_value: int | None = None
    bucket: str
    prefix: str
    key: str
    features: list[str] = Field(default_factory=list)
    classes: list[Any] = Field(default_factory=list)
    label_values: list[Any]
    metrics: Scores
    baseline_macro_f1: float | None = None
    left_out: dict[str, Any] = Field(default_factory=dict)
    trees: int | None = None


class Trial(Model):
    """One parameter set tried by ``train --tune``, with its spatial-CV scores."""

    params: dict[str, Any]
    overall_accuracy: float
    kappa: float
    macro_f1: float
    seconds: float


class HierarchyMetrics(Model):
    category: Scores
    category_baseline_macro_f1: float | None = None
    category_per_polygon: Scores | None = None  # trained from labelled polygons: majority of each one's pixels
    subcategory: dict[str, float] = Field(default_factory=dict)


class HierarchyRecord(ModelRecord):
    """A trained hierarchy: its category model, one subcategory model per category (by value),
    the training settings, seasons and metrics."""

    dataset_id: str | None = None
    features: list[str] = Field(default_factory=list)
    category_model: str
    category_values: dict[str, int] = Field(default_factory=dict)
    subcategory_models: dict[str, str] = Field(default_factory=dict)
    direct: dict[str, Any] = Field(default_factory=dict)
    lc_labels: dict[str, int]
    sl_labels: dict[str, int]
    params: dict[str, Any] = Field(default_factory=dict)
    left_out: dict[str, Any] = Field(default_factory=dict)
    metrics: HierarchyMetrics
    trees: dict[str, Any] = Field(default_factory=dict)
    tuning: list[Trial] | None = None
    composite_params: dict[str, Any] | None = None
    season_defs: list[list[str]] | None = None
    with_dem: bool | None = None

    @property
    def model_type(self) -> str:
        return str(self.params.get("model_type", "?"))


class AbundanceModelRecord(ModelRecord):
    """A trained abundance model (level ``abundance-N1``, ``-N2`` or ``-both``)."""

    kind: str
    bucket: str
    prefix: str
    classes: list[Any] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    dataset_id: str
    base_model: str | None = None
    step: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    baseline_rmse: float | None = None
    model_sha256: str | None = None


class AbundanceModelMeta(Model):
    """``metadata.json`` beside an abundance model's files: what it needs to be rebuilt and run."""

    level: str
    kind: str = "brits"
    files: list[str] = Field(default_factory=list)
    file: str | None = None  # one network file: models saved before the ensemble
    classes: list[str]
    sub_classes: list[str] | None = None
    parents: list[int] | None = None
    feature_names: list[str]
    ancillary_names: list[str]
    times: list[float] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    normalisation: dict[str, Any]
    metrics: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    dataset_id: str
    step: str | None = None
    steps: list[list[str]]
    base_model: str | None = None
    library_versions: dict[str, str] = Field(default_factory=dict)

    @property
    def file_names(self) -> list[str]:
        return self.files or [self.file or "model.pt"]


class FractionScores(Model):
    """Errors of estimated fractions against the labels' (per class: rmse, mae, r2)."""

    rmse: float
    mae: float
    r2: float
    dominant_accuracy: float | None = None
    dominant_macro_f1: float | None = None
    per_class: dict[str, FractionScores] = Field(default_factory=dict)


class ForestSize(Model):
    trees: int
    of: int
    tolerance: float


class AbundanceMetrics(Model):
    """``metrics.json`` of an abundance model: its test-block scores, the mean-abundance
    baseline's, per level, the candidates it was chosen among and the forest size kept."""

    model: FractionScores
    mean_abundance_baseline: FractionScores
    model_type: str = "brits"
    levels: dict[str, FractionScores] = Field(default_factory=dict)
    baseline_levels: dict[str, FractionScores] = Field(default_factory=dict)
    candidates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    forest_size: ForestSize | None = None
    ensemble_forest_size: ForestSize | None = None
    consistency_error: float | None = None


class LoadedAbundanceModel(Model):
    """An abundance model's record with what its metadata adds: the time steps it was trained on
    and the level it estimates."""

    record: AbundanceModelRecord
    steps: list[list[str]]
    step: str
    dataset_id: str
    model_level: str

    @property
    def id(self) -> str:
        return self.record.id


class MapRecord(Record):
    """A classification map of a tile, an area's mosaic (kind "mosaic"), an abundance map (kind
    "abundance-N1"…) or a gap-filled series."""

    COLLECTION: ClassVar[str] = "maps"

    tile: str
    kind: str
    grid: dict[str, Any] | None = None
    outputs: dict[str, MapOutput] = Field(default_factory=dict)
    vectors: dict[str, StoredObject] = Field(default_factory=dict)  # "classification_mmu4.gpkg" -> polygons
    sources: list[str] = Field(default_factory=list)  # a change product's two maps (from, to)
    attachments: dict[str, StoredObject] = Field(default_factory=dict)  # a change product's tables and figure
    classes: dict[str, Any] | list[Any] = Field(default_factory=dict)  # per level, or an abundance map's list
    hierarchy: str | None = None
    composites: list[str] = Field(default_factory=list)
    composite_params: dict[str, Any] | None = None
    pixel_counts: dict[str, Any] = Field(default_factory=dict)
    area_km2: dict[str, Any] = Field(default_factory=dict)
    nodata_pixels: int | None = None
    last_used: str | None = None
    # mosaics
    aoi: str | None = None
    aoi_wkb: str | None = None  # the area's polygons (WKB, hex)
    crs: str | None = None
    maps: list[str] | None = None
    tiles: list[str] | None = None
    # abundance maps and series
    level: str | None = None
    model: str | None = None
    dataset: str | None = None
    gap_filling: str | None = None  # a series: how its gaps were filled
    bands: list[str] | None = None
    steps: list[list[str]] | None = None

    def class_values(self, level: str) -> dict[str, int]:
        """Class name -> pixel value of a class layer (``classification``, ``sl_classification``)."""
        names = self.classes.get(level, {}) if isinstance(self.classes, dict) else {}
        return {name: int(v) for v, name in names.items()}

    @property
    def pixel_grid(self) -> Grid:
        return Grid.from_dict(self.grid or {})


class RunRecord(Record):
    COLLECTION: ClassVar[str] = "runs"

    started: str | None = None
    finished: str | None = None
    preset: str | None = None
    did_work: bool = False
    stages: list[dict[str, Any]] = Field(default_factory=list)
    maps: dict[str, str] = Field(default_factory=dict)
    hierarchy: str | None = None
    dataset: str | None = None
    holdout: dict[str, Any] | None = None
    problems: list[str] = Field(default_factory=list)
    changes: list[str] = Field(default_factory=list)  # change products from an earlier map to this run's


class ModisRecord(Record):
    COLLECTION: ClassVar[str] = "modis"

    granule_id: str
    tile: str
    date: str
    product: str | None = None
    raw: StoredObject
    reflectance: StoredObject
    valid_fraction: float | None = None
    qa: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None


R = TypeVar("R", bound=Record)

KINDS: tuple[type[Record], ...] = (
    ProductRecord,
    CompositeRecord,
    DemRecord,
    DatasetRecord,
    ModelRecord,
    MapRecord,
    RunRecord,
    ModisRecord,
)


def _v1_products(doc: dict[str, Any]) -> dict[str, Any]:
    """Products acquired before per-band offsets were recorded: the processing-baseline rule."""
    if "offsets" not in doc:
        offset = float(baseline_offset(doc.get("processing_baseline")))
        doc["offsets"] = {b: offset for b in doc.get("bands", {}) if b != "SCL"}
    doc.setdefault("product_id", doc["_id"])
    return doc


def _v1_maps(doc: dict[str, Any]) -> dict[str, Any]:
    doc.setdefault("kind", "classification")
    return doc


# version 1 (documents without ``schema_version``) -> 2, per collection
MIGRATIONS: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "products": _v1_products,
    "maps": _v1_maps,
}


def migrate(kind: type[Record], doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document brought to the current schema (a copy; the stored one is untouched)."""
    out = dict(doc)
    version = int(out.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise CatalogError(
            f"{kind.COLLECTION} record {out.get('_id')} has schema version {version}, newer than this "
            f"landcoverpy's {SCHEMA_VERSION}: upgrade landcoverpy"
        )
    if version < 2:
        out = MIGRATIONS.get(kind.COLLECTION, lambda d: d)(out)
    out["schema_version"] = SCHEMA_VERSION
    return out


def from_doc(kind: type[R], doc: Mapping[str, Any]) -> R:
    return kind.model_validate(migrate(kind, doc))


def load(catalog: Catalog, kind: type[R], record_id: str) -> R | None:
    doc = catalog.get(kind.COLLECTION, record_id)
    return None if doc is None else from_doc(kind, doc)


def find(
    catalog: Catalog,
    kind: type[R],
    filter: Filter | None = None,
    sort: list[tuple[str, int]] | None = None,
    limit: int | None = None,
) -> list[R]:
    return [from_doc(kind, d) for d in catalog.find(kind.COLLECTION, filter, sort, limit)]


def save(catalog: Catalog, record: Record) -> None:
    catalog.upsert(record.COLLECTION, record.to_doc() | {"schema_version": SCHEMA_VERSION})


KIND_OF: Mapping[str, type[Record]] = {k.COLLECTION: k for k in KINDS}


def store(catalog: Catalog, record: R) -> R:
    """Save a record a stage built (its fields were checked when it was made); returns it."""
    save(catalog, record)
    return record


def store_doc(catalog: Catalog, kind: type[R], doc: Mapping[str, Any]) -> R:
    """Save a document a stage built, checked against its kind's schema (a field of the wrong
    type fails here, before the catalog vouches for it); returns the typed record."""
    record = from_doc(kind, doc)
    save(catalog, record)
    return record
