"""One settings object, read from the environment (and an optional ``.env``) at the edge.

Variable names follow the original landcoverpy so existing deployments keep working.
Nothing below reads the environment: the CLI builds :class:`Settings` once and passes it down.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from landcoverpy.errors import ConfigurationError


def parse_percentiles(text: str | None) -> tuple[int, ...]:
    """``"10,90"`` -> (10, 90); empty -> (). Values are integers strictly between 0 and 100
    (50 is the median, always there)."""
    if not text or not str(text).strip():
        return ()
    try:
        values = sorted({int(v) for v in str(text).replace(" ", ",").split(",") if v})
    except ValueError:
        raise ValueError(f"percentiles {text!r}: give integers like 10,90") from None
    if any(not 0 < v < 100 or v == 50 for v in values):
        raise ValueError(f"percentiles {text!r}: each strictly between 0 and 100, not 50 (the median is always there)")
    return tuple(values)


class Settings(BaseSettings):
    """Every setting landcoverpy reads; docs/reference/configuration.md is generated from it."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        use_attribute_docstrings=True,
        env_ignore_empty=True,  # an empty variable (compose's ${VAR:-}) means unset
    )

    PRESET: str | None = Field(
        None,
        pattern="^(fast|accurate)$",
        description="named bundle of settings (fast or accurate) under the ones you set; default: accurate "
        "when the seasons cover a year, else fast",
    )

    # Embedded default
    LANDCOVERPY_HOME: Path = Field(Path("./landcover-data"), description="Local store + embedded catalog root")

    # Object store (MinIO / S3). No MINIO_HOST -> local directory store under LANDCOVERPY_HOME.
    MINIO_HOST: str | None = None
    """S3 / MinIO host; unset = the local directory store under LANDCOVERPY_HOME."""
    MINIO_PORT: int = Field(9000, ge=1, le=65535)
    """S3 / MinIO port."""
    MINIO_ACCESS_KEY: str = "minioadmin"
    """S3 access key."""
    MINIO_SECRET_KEY: SecretStr = SecretStr("minioadmin")
    """S3 secret key."""
    MINIO_SECURE: bool = False
    """reach S3 over HTTPS."""
    MINIO_REGION: str = "us-east-1"
    """S3 region."""
    MINIO_BUCKET_NAME_PRODUCTS: str = "products"
    """bucket of the acquired Sentinel-2 bands."""
    MINIO_BUCKET_NAME_COMPOSITES: str = "composites"
    """bucket of composites, spectral indices and cloud masks."""
    MINIO_BUCKET_NAME_ASTER: str = "aster-gdem"
    """bucket of the DEM source tiles."""
    MINIO_BUCKET_NAME_DEM: str = "dem"
    """bucket of the DEM layers (elevation, slope, aspect) on each tile's grid."""
    MINIO_BUCKET_NAME_MODIS: str = "modis"
    """bucket of MODIS granules."""
    MINIO_BUCKET_DATASETS: str = "training-datasets"
    """bucket of the training tables (Parquet)."""
    MINIO_BUCKET_MODELS: str = "models"
    """bucket of models, their metadata, metrics and confusion matrices."""
    MINIO_BUCKET_CLASSIFICATIONS: str = "classification-maps"
    """bucket of the maps, quicklooks, reports and the STAC catalog."""
    MINIO_CONSOLE_URL: str | None = Field(
        None, description="MinIO console address printed with the maps, e.g. http://localhost:9001"
    )
    MINIO_PUBLIC_MAPS: bool = Field(
        False, description="make the maps bucket anonymously readable (opt-in); false again removes that policy"
    )
    TILE_SERVER_URL: str | None = Field(None, description="browser address of a TiTiler serving the store's COGs")

    # Metadata catalog (MongoDB). No MONGO_HOST -> embedded on-disk catalog.
    MONGO_HOST: str | None = None
    """MongoDB host; unset = the embedded on-disk catalog under LANDCOVERPY_HOME."""
    MONGO_PORT: int = Field(27017, ge=1, le=65535)
    """MongoDB port."""
    MONGO_USERNAME: str | None = None
    """MongoDB user (give both user and password, or neither)."""
    MONGO_PASSWORD: SecretStr | None = None
    """MongoDB password."""
    MONGO_DB: str = "landcoverpy"
    """MongoDB database."""
    MONGO_PRODUCTS_COLLECTION: str = "products"
    """collection of acquired products."""
    MONGO_COMPOSITES_COLLECTION: str = "composites"
    """collection of composites."""
    MONGO_DEMS_COLLECTION: str = "dems"
    """collection of DEM layers."""
    MONGO_MODIS_COLLECTION: str = "modis"
    """collection of MODIS granules and abundance assets."""
    MONGO_DATASETS_COLLECTION: str = "datasets"
    """collection of training tables."""
    MONGO_MODELS_COLLECTION: str = "models"
    """collection of models and hierarchies."""
    MONGO_MAPS_COLLECTION: str = "maps"
    """collection of maps."""
    MONGO_RUNS_COLLECTION: str = "runs"
    """collection of run records."""
    MONGO_LEASES_COLLECTION: str = "leases"
    """collection holding the run lease (one writing command at a time)."""

    # Timeouts for reaching servers, seconds
    CONNECT_TIMEOUT: float = Field(5.0, gt=0)
    """seconds to wait for S3, MongoDB or the Dask scheduler before failing with their address."""
    OUTAGE_TOLERANCE: float = Field(120.0, ge=0)
    """seconds a run rides out an unreachable S3, MongoDB or remote raster read (retrying with backoff)
    before it stops with exit status 3; a rerun resumes."""
    # Vector maps
    VECTOR_OUTPUT: bool = False
    """also write each map's classes as polygons (GeoPackage and FlatGeobuf) after run and classify."""
    MMU_PIXELS: int | None = Field(None, ge=1)
    """minimum mapping unit of the polygons, in pixels (smaller regions join their largest neighbour)."""
    MMU_HA: float | None = Field(None, ge=0)
    """minimum mapping unit of the polygons in hectares (instead of MMU_PIXELS)."""
    # Run lease: a run whose heartbeat is older than this (seconds) is taken over
    LEASE_TIMEOUT: float = Field(120.0, gt=0)
    """seconds without heartbeat after which another command takes a run's catalog lease over."""

    # Inputs
    TMP_DIR: Path = Path(tempfile.gettempdir()) / "landcoverpy"
    """scratch space for writing COGs (per process, swept after a crash)."""
    DB_FILE: Path = Path("dataset.csv")
    """labelled points (CSV, GeoJSON or KMZ)."""
    LC_PROPERTY: str = "category"
    """column of the category label in the points."""
    SL_PROPERTY: str = "subcategory"
    """column of the subcategory label in the points."""
    LC_LABELS_FILE: Path = Path("lc_labels.json")
    """category -> integer value map (JSON)."""
    SL_LABELS_FILE: Path = Path("sl_labels.json")
    """subcategory -> integer value map (JSON)."""
    SEASONS_FILE: Path = Path("seasons.json")
    """seasons (JSON)."""

    # Dask
    DASK_CLUSTER_IP: str | None = None
    """host:port of a Dask scheduler; unset = a local cluster of processes."""
    DASK_N_WORKERS: int = Field(2, ge=1)
    """workers of the local cluster (each gets cores / workers GDAL threads)."""
    DASK_THREADS_PER_WORKER: int = Field(1, ge=1)
    """threads per worker of the local cluster."""
    DASK_MEMORY_LIMIT: str = "auto"
    """memory limit per worker of the local cluster (Dask syntax, e.g. 4GiB, or auto)."""

    # Abundance (torch)
    TORCH_DEVICE: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto (a GPU when torch sees one), cpu, cuda or cuda:N"
    )

    # Composites
    COMPOSITE_WINDOW_SIZE: int = Field(1024, ge=64, description="pixels per side of a composite window")
    COMPOSITE_THREADS: int = Field(1, ge=1, description="windows computed concurrently inside one composite task")
    COMPOSITE_PERCENTILES: str = Field("", description="per-band percentile layers besides the median, e.g. 10,90")
    SEASON_SPLIT: str = Field(
        "none", pattern="^(none|monthly)$", description="monthly: one composite per calendar month of each season"
    )
    TIMESERIES_FEATURES: bool = Field(
        False, description="NDVI amplitude, slope and peak day of every season as features"
    )
    SERIES_SAMPLES: int = Field(
        0,
        ge=0,
        le=64,
        description="NDVI of every season interpolated at this many evenly "
        "spaced days, first and last day included (0 = none, else at least 2)",
    )
    SERIES_SPIKE: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="series layers (TIMESERIES_FEATURES, SERIES_SAMPLES): "
        "a date whose NDVI is this much below both its valid neighbours is a gap (0 = keep all)",
    )
    SERIES_SPIKE_MARGIN: int = Field(
        30,
        ge=0,
        description="days outside a season whose catalogued products (an adjacent "
        "season's) are neighbours in the spike test of its first and last dates and fill the NDVI samples of "
        "pixels cloudy all season (0 = none)",
    )
    COMPOSITE_GAP_FILL: bool = Field(
        False,
        description="a pixel without any clear observation in a season takes its "
        "median (and time-series features) from the products up to SERIES_SPIKE_MARGIN days outside it (valid_count "
        "stays 0 there) instead of no data: no holes in maps of short or cloudy seasons",
    )
    MASK_DILATION_PIXELS: int = Field(0, ge=0, description="extra cloud-mask dilation (10 m pixels)")
    CLOUD_PROBABILITY_THRESHOLD: float = Field(0.4, gt=0, lt=1)
    """s2cloudless probability above which an L1C pixel is cloudy."""

    # Training
    NEIGHBOURHOOD: int = Field(3, ge=1, description="odd window side sampled around each point")
    MAX_PIXELS_PER_POLYGON: int | None = Field(
        100, ge=1, description="pixels sampled in each labelled polygon at most (empty: all of them)"
    )
    MODEL_TYPE: str = Field("random_forest", pattern="^(random_forest|lightgbm)$")
    """classifier: random_forest or lightgbm."""
    N_ESTIMATORS: int = Field(100, ge=1, description="trees (random forest: the most; see TREE_TOLERANCE)")
    TREE_TOLERANCE: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="random forest: keep the fewest trees whose spatial-CV "
        "OA, kappa and macro F1 are within this of all N_ESTIMATORS trees (0 = keep all)",
    )
    MAX_DEPTH: int | None = None
    """deepest tree level; unset = unlimited."""
    SPATIAL_BLOCK_KM: float = Field(2.0, gt=0)
    """side of the spatial validation blocks, km."""
    CV_FOLDS: int = Field(5, ge=2)
    """grouped cross-validation folds (a grouped 80/20 hold-out when there are fewer blocks)."""
    RANDOM_SEED: int = 42
    """seed of models and splits."""
    CLASS_WEIGHTING: str = Field(
        "balanced",
        pattern="^(balanced|sqrt|none)$",
        description="class weights in fitting: balanced (1/frequency), sqrt (1/sqrt(frequency)) or none",
    )
    MIN_CLASS_POINTS: int = Field(
        5, ge=1, description="classes labelled at fewer points are left out of a model, with a warning"
    )
    TRAIN_THREADS: int = Field(
        0, ge=0, description="threads for fitting models; 0 = all for random forests, 1 for LightGBM"
    )
    SUBCATEGORY_PREDICTION: bool = True
    """train and predict the subcategory level."""

    # Classification
    CLASSIFICATION_BLOCK_SIZE: int = Field(1024, ge=64)
    """pixels per side of a classification block (one Dask task)."""
    OUTPUT_PROBABILITIES: bool = Field(False, description="also write a COG with every category's probability")
    CLEANING_WINDOW: int = Field(0, ge=0, description="majority filter of the category map (odd size >= 3; 0 = none)")
    TILES_TO_PREDICT: str | None = Field(None, description="space/comma separated tiles, or 'prediction'")

    # Providers
    GCS_BUCKET: str = "gcp-public-data-sentinel-2"
    """Google Cloud bucket of the gcs provider."""
    PRODUCT_LEVEL: str = Field("L2A", pattern="^(L1C|L2A)$")
    """Sentinel-2 processing level fetched: L2A or L1C (cloud-masked with s2cloudless)."""
    GOOGLE_APPLICATION_CREDENTIALS: str | None = None
    """service-account JSON of the gcs provider (unset: anonymous)."""
    STORAGE_EMULATOR_HOST: str | None = None
    """a Google Cloud Storage emulator's address, for tests."""
    DEM_SOURCE: str | None = Field(
        None,
        description="glo30 (Copernicus GLO-30 from the STAC catalog of "
        "STAC_API_URL; the default when STAC_API_URL is set), glo30+URL (another STAC "
        "catalog), a folder or http(s) base URL of ASTER GDEM v3 tiles, or none",
    )
    EARTHDATA_TOKEN: SecretStr | None = None
    """NASA Earthdata token for ASTER GDEM and LP DAAC downloads."""
    MODIS_SOURCE: str | None = Field(None, description="folder of MOD09A1 HDF granules or an LP DAAC base URL")
    SENTINEL_HOST: str | None = Field(None, description="DHuS hub API URL (the original SciHub closed in 2023)")
    SENTINEL_USERNAME: str | None = None
    """DHuS user of the copernicus provider."""
    SENTINEL_PASSWORD: SecretStr | None = None
    """DHuS password of the copernicus provider."""
    STAC_API_URL: str = "https://earth-search.aws.element84.com/v1"
    """STAC API of the stac provider (empty = Earth Search v1)."""
    STAC_PROFILE: str = Field(
        "auto",
        pattern="^(auto|earth-search|planetary-computer|cdse|generic)$",
        description="how the STAC catalog lays out Sentinel-2 (auto: from STAC_API_URL's "
        "host or landing page; generic: tile found by footprint)",
    )
    STAC_COLLECTION: str | None = Field(
        None,
        description="collection searched (default: the profile's for "
        "PRODUCT_LEVEL: Earth Search sentinel-2-c1-l2a / sentinel-2-l1c, Planetary "
        "Computer sentinel-2-l2a, CDSE sentinel-2-l2a / sentinel-2-l1c)",
    )
    STAC_S3_ENDPOINT: str | None = Field(
        None,
        description="endpoint for s3:// asset hrefs (default: the item's "
        "storage scheme, CDSE https://eodata.dataspace.copernicus.eu, else AWS)",
    )
    STAC_S3_ACCESS_KEY: str | None = Field(
        None,
        description="S3 key for s3:// asset hrefs (CDSE: your CDSE S3 "
        "access key; AWS: else the usual AWS credential chain)",
    )
    STAC_S3_SECRET_KEY: SecretStr | None = None
    """S3 secret for s3:// asset hrefs."""

    # Product selection
    MIN_USEFUL_DATA_PERCENTAGE: float = Field(5.0, ge=0, le=100)
    """products need more useful data (100 - cloud - nodata %) than this."""
    MAX_PRODUCTS_COMPOSITE: int = Field(10, ge=1)
    """products per composite, best first."""

    @model_validator(mode="before")
    @classmethod
    def _glo30_with_a_stac_catalog(cls, data: Any) -> Any:
        """A configured STAC catalog (STAC_API_URL given) brings its Copernicus GLO-30 DEM unless
        DEM_SOURCE says otherwise (``none`` switches the DEM off)."""
        if isinstance(data, dict):
            url, dem = data.get("STAC_API_URL"), data.get("DEM_SOURCE")
            if isinstance(url, str) and not url.strip():
                data = {k: v for k, v in data.items() if k != "STAC_API_URL"}  # empty = the default catalog
            elif url is not None and (dem is None or (isinstance(dem, str) and not dem.strip())):
                data = data | {"DEM_SOURCE": "glo30"}
        return data

    @field_validator("COMPOSITE_PERCENTILES")
    @classmethod
    def _percentiles(cls, value: str) -> str:

        parse_percentiles(value)
        return value

    @field_validator("SERIES_SAMPLES")
    @classmethod
    def _two_or_none(cls, value: int) -> int:
        if value == 1:
            raise ValueError("must be 0 (none) or at least 2 (the season's first and last day, and days between)")
        return value

    @field_validator("CLEANING_WINDOW")
    @classmethod
    def _odd_or_zero(cls, value: int) -> int:
        if value and (value < 3 or value % 2 == 0):
            raise ValueError("must be 0 (no cleaning) or an odd size >= 3 (3, 5, 7...)")
        return value

    @field_validator("NEIGHBOURHOOD")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd (1, 3, 5...)")
        return value

    @field_validator(
        "PRESET",
        "MINIO_HOST",
        "MINIO_CONSOLE_URL",
        "TILE_SERVER_URL",
        "MONGO_HOST",
        "DASK_CLUSTER_IP",
        "MONGO_USERNAME",
        "MONGO_PASSWORD",
        "TILES_TO_PREDICT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "STORAGE_EMULATOR_HOST",
        "DEM_SOURCE",
        "MODIS_SOURCE",
        "SENTINEL_HOST",
        "SENTINEL_USERNAME",
        "SENTINEL_PASSWORD",
        "EARTHDATA_TOKEN",
        "MAX_DEPTH",
        "STAC_COLLECTION",
        "STAC_S3_ENDPOINT",
        "STAC_S3_ACCESS_KEY",
        "STAC_S3_SECRET_KEY",
        "MMU_PIXELS",
        "MMU_HA",
        "MAX_PIXELS_PER_POLYGON",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """An empty value means unset (compose passes ``${VAR:-}`` as an empty string)."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def uses_dem(self) -> bool:
        """Whether DEM layers (elevation, slope, aspect) are made and used as features."""
        return self.DEM_SOURCE not in (None, "none")

    @property
    def uses_s3(self) -> bool:
        return self.MINIO_HOST is not None

    @property
    def uses_mongo(self) -> bool:
        return self.MONGO_HOST is not None

    @property
    def s3_endpoint(self) -> str:
        scheme = "https" if self.MINIO_SECURE else "http"
        return f"{scheme}://{self.MINIO_HOST}:{self.MINIO_PORT}"

    @property
    def catalog_path(self) -> Path:
        return self.LANDCOVERPY_HOME / "catalog.sqlite"

    @property
    def store_path(self) -> Path:
        return self.LANDCOVERPY_HOME / "store"

    def collection_names(self) -> dict[str, str]:
        """Logical collection -> configured collection name."""
        return {
            "products": self.MONGO_PRODUCTS_COLLECTION,
            "composites": self.MONGO_COMPOSITES_COLLECTION,
            "dems": self.MONGO_DEMS_COLLECTION,
            "modis": self.MONGO_MODIS_COLLECTION,
            "datasets": self.MONGO_DATASETS_COLLECTION,
            "models": self.MONGO_MODELS_COLLECTION,
            "maps": self.MONGO_MAPS_COLLECTION,
            "runs": self.MONGO_RUNS_COLLECTION,
            "leases": self.MONGO_LEASES_COLLECTION,
        }

    def bucket_names(self) -> dict[str, str]:
        """Logical bucket -> configured bucket name."""
        return {
            "products": self.MINIO_BUCKET_NAME_PRODUCTS,
            "composites": self.MINIO_BUCKET_NAME_COMPOSITES,
            "aster": self.MINIO_BUCKET_NAME_ASTER,
            "dem": self.MINIO_BUCKET_NAME_DEM,
            "modis": self.MINIO_BUCKET_NAME_MODIS,
            "datasets": self.MINIO_BUCKET_DATASETS,
            "models": self.MINIO_BUCKET_MODELS,
            "classifications": self.MINIO_BUCKET_CLASSIFICATIONS,
        }


def load_settings(**overrides: object) -> Settings:
    """Build :class:`Settings` from the environment; malformed values raise ConfigurationError
    naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "?"
            problems.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise ConfigurationError(
            "Invalid setting(s): " + "; ".join(problems) + ". Fix the environment variable or .env entry."
        ) from None
