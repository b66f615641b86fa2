"""Helpers for functions that run as Dask tasks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from landcoverpy.errors import LandcoverError

F = TypeVar("F", bound=Callable[..., Any])


def dask_task(fn: F) -> F:
    """Our errors reach the client as themselves: the chained library exceptions they were raised
    from (GDAL's CPLE errors, for one) cannot always be unpickled, which would turn a clear
    message into a generic one. The message already says what went wrong, so the chain is cut."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LandcoverError as exc:
            exc.__cause__ = None
            exc.__context__ = None
            exc.__suppress_context__ = True
            raise exc.with_traceback(None) from None

    return wrapper  # type: ignore[return-value]


def task_key(name: str) -> str:
    """A readable, unique Dask key: a stable key would hand back a previous run's (possibly
    failed) result still held by the scheduler instead of running the task again."""
    import uuid

    return f"{name}-{uuid.uuid4().hex[:8]}"
