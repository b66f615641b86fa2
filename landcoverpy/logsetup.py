"""Logging configuration for the command line."""

from __future__ import annotations

import logging


def configure_logging(verbose: int = 0) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "rasterio", "distributed", "pymongo"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
