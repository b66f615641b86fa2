"""Retrying remote calls: searches, listings, downloads and uploads of every provider.

A failure is retried when it may pass: a network error (``OSError``, which covers requests' and
urllib3's connection errors and timeouts, ``ConnectionError``, ``TimeoutError``) or a
:class:`~landcoverpy.errors.TransientError` that a provider raised for a dropped connection, a
timeout or an HTTP 429/5xx answer. Anything else (bad credentials, not found, bad data) fails at
once. Backoff is exponential and bounded (tenacity).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from landcoverpy.errors import LandcoverError, ProviderError, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 4
BASE_DELAY = 1.0
MAX_DELAY = 30.0
RETRIED = (OSError, ConnectionError, TimeoutError, TransientError)


def with_retries(what: str, fn: Callable[[], T], attempts: int | None = None, base_delay: float | None = None) -> T:
    """Call ``fn``, retrying transient failures ``attempts`` times in all with exponential
    backoff; then a ProviderError naming ``what``, the attempts and the last failure."""
    attempts = attempts or ATTEMPTS
    base = BASE_DELAY if base_delay is None else base_delay

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s: %s, retrying in %.0f s (%d/%d)", what, _describe(exc), delay, state.attempt_number, attempts)

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=base, max=MAX_DELAY),
        retry=retry_if_exception_type(RETRIED),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn)
    except RETRIED as exc:
        raise ProviderError(f"{what}: failed after {attempts} attempts ({_describe(exc)})") from None


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "?"
    if isinstance(exc, LandcoverError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def is_transient_status(status: int | None) -> bool:
    """HTTP answers worth retrying: too many requests, and server-side errors."""
    return status is not None and (status == 429 or 500 <= status < 600)
