"""The run lease: one run at a time on a catalog.

A lease is one catalog record (``leases`` collection, ``_id`` = the lease name) created with an
insert that fails when the record exists: SQLite's primary key in one transaction on the embedded
catalog, MongoDB's unique ``_id`` on a server. The holder refreshes a heartbeat; another run
refuses at once naming the holder (host, pid, command, start time), or waits with ``wait=True``.
A lease whose heartbeat is older than ``timeout`` seconds, or whose holder process is known to be
gone (same host, pid no longer running the process that took it), is taken over with a warning
through a compare-and-swap on the holder's token, so two runs can never both take it over.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import Any

import psutil

from landcoverpy.catalog import Catalog, DuplicateRecordError
from landcoverpy.errors import LandcoverError

log = logging.getLogger(__name__)

COLLECTION = "leases"
DEFAULT_NAME = "workflow"


class LeaseHeldError(LandcoverError):
    """Another run holds the catalog's lease."""


class LeaseLostError(LandcoverError):
    """This run's lease was taken over (its heartbeat went stale)."""


def _process_started(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:  # no such process, or not ours to see
        return None


def holder_is_gone(doc: dict[str, Any]) -> bool:
    """True when the holder ran on this host and its process no longer exists (or the pid now
    belongs to a process started after the lease was taken)."""
    if doc.get("host") != socket.gethostname():
        return False
    pid = int(doc.get("pid", 0))
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        started = doc.get("process_started")
        return started is not None and abs(proc.create_time() - float(started)) > 1.0
    except psutil.AccessDenied:
        return False
    except psutil.Error:  # no such process
        return True


def describe_holder(doc: dict[str, Any], now: float | None = None) -> str:
    age = (now or time.time()) - float(doc.get("heartbeat", 0))
    return (
        f"`{doc.get('command', '?')}` on host {doc.get('host', '?')}, pid {doc.get('pid', '?')}, "
        f"started {doc.get('started', '?')} (last heartbeat {age:.0f} s ago)"
    )


class RunLease:
    """Context manager holding the catalog's run lease for the duration of a command."""

    def __init__(
        self,
        catalog: Catalog,
        command: str,
        timeout: float = 120.0,
        name: str = DEFAULT_NAME,
        wait: bool = False,
        poll: float = 1.0,
        max_wait: float | None = None,
    ) -> None:
        self.catalog, self.command, self.timeout, self.name = catalog, command, float(timeout), name
        self.wait, self.poll, self.max_wait = wait, poll, max_wait
        self.token = uuid.uuid4().hex
        self.interval = max(0.5, min(30.0, self.timeout / 4))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.held = False
        self.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    def _doc(self) -> dict[str, Any]:
        now = time.time()
        pid = os.getpid()
        return {
            "_id": self.name,
            "token": self.token,
            "host": socket.gethostname(),
            "pid": pid,
            "process_started": _process_started(pid),
            "command": self.command,
            "started": self.started,
            "heartbeat": now,
            "heartbeat_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
            "timeout": self.timeout,
        }

    def _try_take(self) -> dict[str, Any] | None:
        """Take the lease; return the holder's record when another run holds it."""
        try:
            self.catalog.insert(COLLECTION, self._doc())
            return None
        except DuplicateRecordError:
            pass
        current = self.catalog.get(COLLECTION, self.name)
        if current is None:  # released between our insert and our read: try again
            return self._try_take()
        stale = time.time() - float(current.get("heartbeat", 0)) > float(current.get("timeout", self.timeout))
        gone = holder_is_gone(current)
        if stale or gone:
            if self.catalog.replace_if(COLLECTION, self.name, {"token": current["token"]}, self._doc()):
                why = "its process is gone" if gone else f"no heartbeat for more than {self.timeout:.0f} s"
                log.warning("took over the catalog lease from %s: %s", describe_holder(current), why)
                return None
            return self.catalog.get(COLLECTION, self.name) or current
        return current

    def acquire(self) -> RunLease:
        waited_since = time.monotonic()
        announced = False
        while True:
            holder = self._try_take()
            if holder is None:
                break
            if not self.wait or (self.max_wait is not None and time.monotonic() - waited_since > self.max_wait):
                raise LeaseHeldError(
                    f"another run is using this catalog: {describe_holder(holder)}. Wait for it to finish or "
                    "rerun with --wait; a lease without heartbeat for "
                    f"{float(holder.get('timeout', self.timeout)):.0f} s "
                    "(LEASE_TIMEOUT) is taken over."
                )
            if not announced:
                log.info("waiting for the catalog lease held by %s", describe_holder(holder))
                announced = True
            time.sleep(self.poll)
        self.held = True
        self.catalog.write_guard = self.ensure_held
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        log.debug("catalog lease taken by %s (token %s)", self.command, self.token)
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._beat_once():
                return

    def _beat_once(self) -> bool:
        """Refresh the heartbeat if the lease is still ours; False (and ``lost``) when another
        run took it over. A transient catalog error is retried at the next beat."""
        try:
            if self.catalog.replace_if(COLLECTION, self.name, {"token": self.token}, self._doc()):
                return True
        except Exception as exc:
            log.warning("lease heartbeat failed (%s); retrying", exc)
            return True
        self.lost = True
        log.error("the catalog lease was taken over by another run; this run stops at its next step")
        return False

    def ensure_held(self) -> None:
        """Raise LeaseLostError when another run took the lease over (call before destructive steps)."""
        if self.lost or not self.held:
            raise LeaseLostError(
                "this run lost the catalog lease to another run (its heartbeat was late by more than "
                f"{self.timeout:.0f} s); its outputs so far are kept, rerun when the other run is done"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.catalog.write_guard == self.ensure_held:
            self.catalog.write_guard = None
        if self.held:
            try:
                self.catalog.delete_many(COLLECTION, {"_id": self.name, "token": self.token})
            except Exception as exc:  # the lease goes stale on its own
                log.warning("could not release the catalog lease (%s)", exc)
            self.held = False

    def __enter__(self) -> RunLease:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
