"""Provider selection by name (``--provider``)."""

from __future__ import annotations

from pathlib import Path

from landcoverpy.config import Settings
from landcoverpy.errors import ProviderError
from landcoverpy.extras import require
from landcoverpy.sources.base import Provider
from landcoverpy.sources.hrefs import AssetReader

PROVIDERS = ("local", "gcs", "stac", "copernicus")


def asset_reader(settings: Settings) -> AssetReader:
    """How STAC asset hrefs are read under ``settings`` (timeout, S3 keys)."""
    secret = settings.STAC_S3_SECRET_KEY
    return AssetReader(
        timeout=max(settings.CONNECT_TIMEOUT, 30),
        s3_access_key=settings.STAC_S3_ACCESS_KEY,
        s3_secret_key=secret.get_secret_value() if secret else None,
    )


def make_provider(name: str, settings: Settings, source: Path | None = None) -> Provider:
    if name == "local":
        from landcoverpy.sources.local import LocalProvider

        if source is None:
            raise ProviderError(
                "the local provider needs --source DIR (a folder of SAFE products or product.json folders)"
            )
        return LocalProvider(source)
    if name == "gcs":
        require("gcs")
        from landcoverpy.sources.gcs import GCSProvider

        return GCSProvider(
            bucket=settings.GCS_BUCKET,
            level=settings.PRODUCT_LEVEL,
            credentials_file=settings.GOOGLE_APPLICATION_CREDENTIALS,
            endpoint=settings.STORAGE_EMULATOR_HOST,
            timeout=max(settings.CONNECT_TIMEOUT, 30),
        )
    if name == "stac":
        from landcoverpy.sources.stac import STACProvider

        return STACProvider(
            url=settings.STAC_API_URL,
            collection=settings.STAC_COLLECTION,
            level=settings.PRODUCT_LEVEL,
            profile=settings.STAC_PROFILE,
            timeout=max(settings.CONNECT_TIMEOUT, 30),
            s3_endpoint=settings.STAC_S3_ENDPOINT,
            reader=asset_reader(settings),
        )
    if name == "copernicus":
        require("copernicus")
        from landcoverpy.sources.copernicus import CopernicusProvider

        if not (settings.SENTINEL_HOST and settings.SENTINEL_USERNAME and settings.SENTINEL_PASSWORD):
            raise ProviderError("the copernicus provider needs SENTINEL_HOST, SENTINEL_USERNAME and SENTINEL_PASSWORD")
        return CopernicusProvider(
            settings.SENTINEL_HOST,
            settings.SENTINEL_USERNAME,
            settings.SENTINEL_PASSWORD.get_secret_value(),
            level=settings.PRODUCT_LEVEL,
            download_dir=settings.TMP_DIR / "dhus",
            timeout=max(settings.CONNECT_TIMEOUT, 30),
        )
    if name in PROVIDERS:
        raise ProviderError(f"provider {name!r} is not available in this version yet; use --provider local")
    raise ProviderError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}")
