"""Functions run as Dask tasks on worker processes by the tests (importable there by name)."""

from __future__ import annotations

import logging
import warnings

from landcoverpy.pipeline.tasks import dask_task


@dask_task
def warn_and_return(value: int) -> int:
    warnings.warn(f"suspicious band {value} (a warning raised on a worker)", UserWarning, stacklevel=1)
    logging.getLogger("landcoverpy.pipeline.composites").warning("worker-side warning %d", value)
    return value * 2
