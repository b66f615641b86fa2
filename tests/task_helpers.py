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


def rss() -> int:
    """This process's resident memory (for ``client.run``: no task starts)."""
    import psutil

    return int(psutil.Process().memory_info().rss)


@dask_task
def touch_and_free(mib: int) -> int:
    """Allocate and touch ``mib`` MiB, free it; the process's resident memory afterwards."""
    import numpy as np

    block = np.ones(mib << 20, dtype=np.uint8)  # writes, so every page is resident
    del block
    return rss()


@dask_task
def resident() -> int:
    """The process's resident memory as a task of its own kind starts."""
    return rss()
