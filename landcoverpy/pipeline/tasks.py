"""Helpers for functions that run as Dask tasks."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import inspect
import logging
import os
import tempfile
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from distributed import WorkerPlugin, get_worker

from landcoverpy.errors import LandcoverError, TaskError
from landcoverpy.faults import DEFAULT_TOLERANCE, Service, describe, ride_out
from landcoverpy.storage import no_space, open_store, read_remote

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)

LOG_TOPIC = "landcoverpy-log"
_forwarding = {"installed": False}
_last_kind: dict[str, str | None] = {"kind": None}  # the kind of the last task this process started


class _ForwardToClient(logging.Handler):
    """Sends warnings and errors logged (or raised as Python warnings) in a worker process to the
    client as Dask events, so they reach the user's log instead of a worker's stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            worker = get_worker()
        except ValueError:
            return  # not inside a task
        try:
            worker.log_event(
                LOG_TOPIC,
                {
                    "pid": os.getpid(),
                    "worker": str(worker.name),
                    "logger": record.name,
                    "level": record.levelno,
                    "message": record.getMessage(),
                },
            )
        except Exception:  # never let logging break a task
            pass


def _install_forwarding() -> None:
    if _forwarding["installed"]:
        return
    handler = _ForwardToClient(level=logging.WARNING)
    logging.captureWarnings(True)
    for name in ("landcoverpy", "py.warnings"):
        logging.getLogger(name).addHandler(handler)
    _forwarding["installed"] = True


def forward_to_log(event: Any) -> None:
    """Client side of the forwarding: log a worker's message here (events from this very process,
    an in-process cluster, were logged already)."""
    _, msg = event if isinstance(event, tuple) else (None, event)
    if not isinstance(msg, dict) or msg.get("pid") == os.getpid():
        return
    logging.getLogger(str(msg.get("logger", "landcoverpy"))).log(
        int(msg.get("level", logging.WARNING)), "[worker %s] %s", msg.get("worker", "?"), msg.get("message", "")
    )


def task_threads() -> int | None:
    """The threads of the Dask worker running this task (the parallelism the cluster gives it),
    or None outside a worker, where a library may use the machine's cores."""
    try:
        return int(get_worker().state.nthreads)
    except ValueError:
        return None


def dask_task(fn: F) -> F:
    """A function run as a Dask task, under the fault policy and with errors that are ours.

    - Transient failures (a dropped S3 connection, GDAL's failed read of a remote raster) are
      retried whole, with backoff, for up to the task's ``settings.OUTAGE_TOLERANCE`` seconds
      (faults.ride_out); tasks write id-addressed objects, so a second try is safe. Bad input is
      never retried.
    - Our errors reach the client as themselves: the chained library exceptions they were raised
      from (GDAL's CPLE errors, for one) cannot always be unpickled, so the chain is cut. A full
      disk becomes a StorageError naming the path; any other exception becomes a TaskError with
      one line for the user and the worker's traceback for ``-v`` (Dask's own "Compute Failed"
      dump is silenced: see quiet_task_failures).
    - Warnings logged while the task runs on a worker are forwarded to the client's log.
    - The first task of a kind in a process starts by handing the heap's free memory back
      (release_memory): tasks of one kind reuse each other's pages, another kind does not
      inherit them."""
    kind = f"{fn.__module__}.{fn.__qualname__}"
    name = fn.__name__.replace("_", " ")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _install_forwarding()
        if _last_kind["kind"] != kind:
            _last_kind["kind"] = kind
            release_memory()
        settings: Any = args[0] if args else kwargs.get("settings")
        remote = bool(getattr(settings, "uses_s3", False))
        service = (
            Service(f"S3 object store at {settings.MINIO_HOST}:{settings.MINIO_PORT}", "MINIO_HOST / MINIO_PORT")
            if remote
            else Service("a remote server", "the provider's and the store's settings")
        )
        tolerance = float(getattr(settings, "OUTAGE_TOLERANCE", DEFAULT_TOLERANCE))
        try:
            if remote:  # reads rasters of the S3 store in place: see storage.read_remote
                return read_remote(
                    lambda: fn(*args, **kwargs),
                    name,
                    service,
                    tolerance,
                    lambda: open_store(settings, check=False).list_buckets(),
                )
            return ride_out(lambda: fn(*args, **kwargs), service=service, what=name, tolerance=tolerance)
        except LandcoverError as exc:
            raise _bare(exc) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                where = (
                    Path(exc.filename) if exc.filename else Path(getattr(settings, "TMP_DIR", tempfile.gettempdir()))
                )
                raise _bare(no_space(where.parent if where.suffix else where, name)) from None
            raise _task_error(name, exc) from None
        except Exception as exc:
            raise _task_error(name, exc) from None

    return wrapper  # type: ignore[return-value]


def _bare(exc: LandcoverError) -> LandcoverError:
    exc.__cause__ = None
    exc.__context__ = None
    exc.__suppress_context__ = True
    return exc.with_traceback(None)


def _task_error(name: str, exc: BaseException) -> TaskError:
    detail = "".join(traceback.format_exception(exc))
    log.debug("%s failed:\n%s", name, detail)
    return TaskError(f"{name} failed ({describe(exc)}); rerun with -v for the worker's traceback", detail)


class _DropComputeFailed(logging.Filter):
    """Drops the worker's "Compute Failed" dump: the client reports each failed task itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Compute Failed")


def quiet_task_failures() -> None:
    """In this process (a worker's, or the client's for an in-process cluster), no "Compute
    Failed" block on the console for a task that failed."""
    worker_log = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _DropComputeFailed) for f in worker_log.filters):
        worker_log.addFilter(_DropComputeFailed())


class QuietTaskFailures(WorkerPlugin):
    """Installs :func:`quiet_task_failures` on every worker of a cluster, present and future."""

    name = "landcoverpy-quiet-task-failures"

    def setup(self, worker: Any) -> None:
        quiet_task_failures()


@functools.lru_cache(maxsize=1)
def _libc() -> Any:

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_memory() -> bool:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim``), when a task of another
    kind than the previous one starts in this process. Workers keep freed windows and blocks on
    the heap (see WORKER_MALLOC_ENV in pipeline/cluster.py: no page is zeroed twice for tasks of
    one kind), and what one stage leaves there would otherwise stay resident under the next
    (measured: the dataset stage's 1.8 GB stayed under classification, 2.6 GB peak). False where
    the C library has no malloc_trim."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _release_between_stages() -> bool:
    _last_kind["kind"] = None  # the next task starts from a trimmed heap whatever its kind
    return release_memory()


def release_workers(client: Any) -> None:
    """At the end of a stage, every worker hands its heap's free pages back to the OS now, instead
    of holding the stage's peak while it waits (through the client's training, or after the run)
    until a task of the next kind starts. Best effort: a worker that cannot be reached is skipped
    and the next task's own release still happens."""
    if client is None:
        return
    try:
        client.run(_release_between_stages, on_error="ignore")
    except Exception as exc:  # noqa: BLE001 - memory hygiene never fails a run
        log.debug("workers not asked to release memory: %s", exc)


def releases_workers(stage: F) -> F:
    """For a stage function with a ``client`` parameter: when it returns or fails, the workers
    release the memory its tasks left on their heaps (release_workers)."""
    signature = inspect.signature(stage)

    @functools.wraps(stage)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        client = signature.bind_partial(*args, **kwargs).arguments.get("client")
        try:
            return stage(*args, **kwargs)
        finally:
            release_workers(client)

    return wrapper  # type: ignore[return-value]


def task_key(name: str) -> str:
    """A readable, unique Dask key: a stable key would hand back a previous run's (possibly
    failed) result still held by the scheduler instead of running the task again."""

    return f"{name}-{uuid.uuid4().hex[:8]}"
