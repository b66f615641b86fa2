"""Scratch space for intermediate files (COG building, downloads), under TMP_DIR.

Each user gets a folder named after its host and process (``lcp-{host}-{pid}-{random}``), removed
when the work is done. A process killed with SIGKILL cannot clean up, so every new scratch folder
first sweeps the folders of processes of this host that no longer exist: a killed run leaves
nothing behind after the next one starts, on the client and on every worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

PREFIX = "lcp"


def _host() -> str:
    return socket.gethostname().replace("-", "_")


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.pid_exists(pid)) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.AccessDenied:
        return True
    except psutil.Error:  # the process vanished while looking
        return False


def sweep_stale(base: Path) -> int:
    """Remove scratch folders of dead processes of this host; returns how many were removed."""
    if not base.is_dir():
        return 0
    removed = 0
    host = _host()
    for folder in base.glob(f"{PREFIX}-{host}-*"):
        parts = folder.name.split("-")
        try:
            pid = int(parts[2])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d scratch folder(s) left in %s by killed runs", removed, base)
    return removed


@contextlib.contextmanager
def scratch_dir(base: Path) -> Iterator[Path]:
    """A fresh scratch folder under ``base`` (created), removed on exit."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    sweep_stale(base)
    with tempfile.TemporaryDirectory(dir=base, prefix=f"{PREFIX}-{_host()}-{os.getpid()}-") as tmp:
        yield Path(tmp)
