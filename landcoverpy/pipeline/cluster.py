"""A Dask client: the scheduler at DASK_CLUSTER_IP when set, otherwise a LocalCluster."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import dask
from distributed import Client, LocalCluster, Nanny
from distributed.client import FutureCancelledError, FuturesCancelledError
from distributed.comm import CommClosedError, connect

from landcoverpy.config import Settings
from landcoverpy.errors import ConfigurationError, ServiceUnavailableError
from landcoverpy.faults import Service, describe, outage
from landcoverpy.pipeline.tasks import LOG_TOPIC, QuietTaskFailures, forward_to_log, quiet_task_failures

log = logging.getLogger(__name__)
T = TypeVar("T")


def scheduler_address(settings: Settings) -> str | None:
    address = settings.DASK_CLUSTER_IP
    if not address:
        return None
    return address if "://" in address else f"tcp://{address}"


def describe_cluster(settings: Settings) -> str:
    address = scheduler_address(settings)
    if address:
        return f"Dask scheduler at {address}"
    return (
        f"local Dask cluster ({settings.DASK_N_WORKERS} workers x "
        f"{settings.DASK_THREADS_PER_WORKER} threads, memory limit {settings.DASK_MEMORY_LIMIT})"
    )


def check_scheduler(settings: Settings) -> dict[str, Any] | None:
    """Connect briefly to DASK_CLUSTER_IP and return its worker summary (None for local)."""
    address = scheduler_address(settings)
    if not address:
        return None
    with dask_client(settings) as client:
        info = client.scheduler_info()
        return {"address": address, "workers": len(info.get("workers", {})), "dashboard": dashboard_link(client)}


def dashboard_link(client: Any) -> str | None:
    """The cluster's dashboard address, when it serves one (a local cluster needs bokeh)."""
    services = client.scheduler_info().get("services", {})
    if "dashboard" not in services or not _has_bokeh_or_remote(client):
        return None
    return str(client.dashboard_link)


def _has_bokeh_or_remote(client: Any) -> bool:

    return not isinstance(getattr(client, "cluster", None), LocalCluster) or _has_bokeh()


# CPython versions whose sys._current_frames() can deadlock with the garbage collector (below)
PROFILER_UNSAFE = sys.version_info[:3] < (3, 11, 9) or (3, 12) <= sys.version_info[:2] < (3, 12, 3)


def require_profiling() -> None:
    """``run --profile`` writes a Dask performance report, which needs bokeh."""
    if not _has_bokeh():
        raise ConfigurationError(
            "--profile writes a Dask performance report, which needs bokeh: "
            "pip install 'landcoverpy[dashboard]' (make installs it)"
        )


def _has_bokeh() -> bool:

    return importlib.util.find_spec("bokeh") is not None


def probe_scheduler(address: str, timeout: float) -> None:
    """Connect to the scheduler and complete distributed's handshake within ``timeout`` seconds.
    distributed waits for the handshake reply without a deadline, so a port that accepts TCP but
    never answers would hang a Client for minutes; this fails fast instead."""

    async def attempt() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout=timeout)
        await comm.close()

    try:
        asyncio.run(attempt())
    except (OSError, TimeoutError) as exc:
        what = "no answer" if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) else type(exc).__name__
        raise ServiceUnavailableError(
            f"Dask scheduler at {address} is unreachable ({what} within {timeout:g} s). "
            "Check DASK_CLUSTER_IP (host:port) and that the scheduler is running."
        ) from None


# Dask workers sample every thread's stack with sys._current_frames() (their statistical
# profiler). On CPython 3.11 before 3.11.9 (and 3.12 before 3.12.3) that call can deadlock with the garbage collector
# (python/cpython#106883, #116969; dask/distributed#8616): a worker then hangs for good with its
# task threads waiting for the GIL. We never read those profiles, so workers run without them:
# local clusters get this config, worker processes the environment variable (tests). The
# Docker image runs the latest 3.11 (python:3.11-slim), which has the fix; there `run --profile`
# turns the profiler on for its local cluster, so the performance report has worker profiles.
PROFILER_ENV = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}


def disable_worker_profiler() -> None:
    """Turn dask's worker profiler off for clusters created from this process (and, through the
    environment, for worker processes it starts)."""

    dask.config.set({"distributed.worker.profile.enabled": False})
    os.environ.update(PROFILER_ENV)


# glibc allocator settings for local worker processes: one heap (no mmap, one arena, trim only
# above 4 GiB) so each window and block reuses the previous one's pages instead of mapping and
# zeroing fresh ones; Dask's own MALLOC_TRIM_THRESHOLD_ freezes the mmap threshold at 128 KiB.
# Memory is handed back when a task of another kind starts (tasks.release_memory). A variable
# already in the environment wins. Figures: docs/benchmarks.md.
WORKER_MALLOC_ENV = {
    "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_ARENA_MAX": "1",
}


def worker_environ(n_workers: int = 1) -> dict[str, str | None]:
    """The nanny's pre-spawn environment for ``n_workers`` local workers: dask's own, with
    WORKER_MALLOC_ENV and each worker's share of the cores for GDAL's threads (compression,
    decoding: see raster/cog.gdal_threads); a GDAL_NUM_THREADS already in the environment wins."""

    share = os.environ.get("GDAL_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // max(1, n_workers)))
    return (
        dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
        | WORKER_MALLOC_ENV
        | {"GDAL_NUM_THREADS": share}
    )


_spawning = 0  # nannies of this process between writing os.environ and their worker's start
_environ_before: dict[str, str | None] = {}


@functools.lru_cache(maxsize=1)
def environ_keeping_nanny() -> type:
    """A Nanny that puts this process's os.environ back after starting its worker. dask's nanny
    writes its pre-spawn environment into the parent's os.environ for the worker to inherit, and
    leaves it there, at the first start and at every restart after a worker died: it would then
    override the next local cluster's environment (dask reads the environment first, and
    worker_environ takes a GDAL_NUM_THREADS found there for the user's) and this process's own
    GDAL threads. Nannies that start at once share one snapshot, restored when the last is up,
    so none of them spawns with the environment already taken back."""

    class EnvironKeepingNanny(Nanny):
        async def instantiate(self) -> Any:
            global _spawning
            if _spawning == 0:
                _environ_before.clear()
            for key in self.pre_spawn_env:
                _environ_before.setdefault(key, os.environ.get(key))
            _spawning += 1
            try:
                return await super().instantiate()
            finally:
                _spawning -= 1
                if _spawning == 0:
                    for key, value in _environ_before.items():
                        if value is None:
                            os.environ.pop(key, None)
                        else:
                            os.environ[key] = value

    return EnvironKeepingNanny


@contextlib.contextmanager
def dask_client(settings: Settings, processes: bool = True, worker_profiler: bool = False) -> Iterator[Any]:
    """Yield a ``distributed.Client``; close it (and any LocalCluster) afterwards. With
    ``worker_profiler`` a local cluster's workers sample their stacks (for a performance report)
    where this CPython is safe from the deadlock above."""

    address = scheduler_address(settings)
    if address:
        probe_scheduler(address, settings.CONNECT_TIMEOUT)
        try:
            # the client's timeout also bounds how long it tries to reconnect after losing the
            # scheduler: OUTAGE_TOLERANCE (the first connection was checked by the probe above)
            client = Client(address, timeout=f"{max(settings.CONNECT_TIMEOUT, settings.OUTAGE_TOLERANCE, 1)}s")
        except (OSError, TimeoutError) as exc:
            raise ServiceUnavailableError(
                f"Dask scheduler at {address} is unreachable ({type(exc).__name__}). "
                "Check DASK_CLUSTER_IP (host:port) and that the scheduler is running."
            ) from None
        log.info("Connected to %s", address)
        client.subscribe_topic(LOG_TOPIC, forward_to_log)
        client.register_plugin(QuietTaskFailures())
        try:
            yield client
        finally:
            client.close()
        return
    if worker_profiler and not PROFILER_UNSAFE:
        dask.config.set({"distributed.worker.profile.enabled": True})
        os.environ.pop(next(iter(PROFILER_ENV)), None)
    else:
        if worker_profiler:
            log.warning(
                "worker profiles are off on Python %s (sys._current_frames deadlock, python/cpython#116969): "
                "the performance report has the task stream, not the profiles",
                sys.version.split()[0],
            )
        disable_worker_profiler()

    spawn_env = worker_environ(settings.DASK_N_WORKERS)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
        cluster = LocalCluster(
            n_workers=settings.DASK_N_WORKERS,
            threads_per_worker=settings.DASK_THREADS_PER_WORKER,
            memory_limit=settings.DASK_MEMORY_LIMIT,
            processes=processes,
            dashboard_address=":0",  # a free port: never "port 8787 is already in use" noise
            host="127.0.0.1",
            **({"worker_class": environ_keeping_nanny()} if processes else {}),
        )
    client = Client(cluster)
    client.subscribe_topic(LOG_TOPIC, forward_to_log)
    client.register_plugin(QuietTaskFailures())
    quiet_task_failures()  # an in-process cluster's workers log here
    log.info("Started %s", describe_cluster(settings))
    try:
        yield client
    finally:
        client.close()
        cluster.close()


SCHEDULER_LOST = (FutureCancelledError, FuturesCancelledError, CommClosedError)


def ride_out_scheduler(client: Any, settings: Settings, work: Callable[[], T], what: str = "the run") -> T:
    """``work()``, done again when the client lost its scheduler in the middle (a restart, a
    dropped connection): distributed cancels every future then, and reconnects for up to
    OUTAGE_TOLERANCE seconds. Work already finished is reused (id-addressed outputs), so doing
    it again resumes where it stopped. A scheduler that does not come back in time ends in an
    OutageError naming DASK_CLUSTER_IP."""
    address = scheduler_address(settings) or "local"
    service = Service(f"Dask scheduler at {address}", "DASK_CLUSTER_IP")
    while True:
        try:
            return work()
        except SCHEDULER_LOST as exc:
            if client.status == "running" and "connection-lost" not in str(exc):
                raise
            started = time.monotonic()
            log.warning(
                "%s lost the connection to %s (%s); waiting for it, then resuming", what, service.name, describe(exc)
            )
            while client.status != "running":
                if client.status in ("closed", "closing") or time.monotonic() - started > settings.OUTAGE_TOLERANCE:
                    raise outage(service, what, exc, time.monotonic() - started, settings.OUTAGE_TOLERANCE) from None
                time.sleep(0.2)
            log.info("%s answers again: %s resumes where it stopped", service.name, what)
