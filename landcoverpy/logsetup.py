"""Logging configuration for the command line.

Quiet by default: our own messages at INFO, every library (Dask's scheduler and nannies,
botocore, rasterio...) at WARNING; ``-v`` lets the libraries speak at INFO, ``-vv`` adds our
DEBUG messages. Libraries never log at DEBUG here: their debug output carries request details
(signed headers, connection strings) that have no place in a log. Warnings raised inside Dask
tasks on worker processes are forwarded to this log (:mod:`landcoverpy.pipeline.tasks`).
"""

from __future__ import annotations

import logging
import os

THIRD_PARTY = (
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "rasterio",
    "distributed",
    "pymongo",
    "fsspec",
    "matplotlib",
    "PIL",
    "numba",
    "google",
    "sentinelsat",
    "pystac_client",
    "requests",
    "tornado",
    "bokeh",
    "pyogrio",
    "shapely",
)


def configure_logging(verbose: int = 0) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose <= 1 else logging.DEBUG
    third_party = logging.INFO if verbose >= 1 else logging.WARNING
    # Dask configures its own loggers when imported, here and in worker processes it spawns:
    # the environment reaches both (unless the user set it).
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", logging.getLevelName(third_party).lower())
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    logging.captureWarnings(True)
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(third_party)
