"""Helpers for functions that run as Dask tasks."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import inspect
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from distributed import get_worker

from landcoverpy.errors import LandcoverError

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
    """Our errors reach the client as themselves: the chained library exceptions they were raised
    from (GDAL's CPLE errors, for one) cannot always be unpickled, which would turn a clear
    message into a generic one. The message already says what went wrong, so the chain is cut.
    Warnings logged while the task runs on a worker are forwarded to the client's log. The first
    task of a kind in a process starts by handing the heap's free memory back (release_memory):
    tasks of one kind reuse each other's pages, another kind does not inherit them."""
    kind = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _install_forwarding()
        if _last_kind["kind"] != kind:
            _last_kind["kind"] = kind
            release_memory()
        try:
            return fn(*args, **kwargs)
        except LandcoverError as exc:
            exc.__cause__ = None
            exc.__context__ = None
            exc.__suppress_context__ = True
            raise exc.with_traceback(None) from None

    return wrapper  # type: ignore[return-value]


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
