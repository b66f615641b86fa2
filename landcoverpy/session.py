"""A working session on the store and catalog: opened once, holding the catalog's run lease
while it writes (the command line and the Python API both use it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from landcoverpy.assets.lease import RunLease
from landcoverpy.config import Settings
from landcoverpy.context import Context


@contextlib.contextmanager
def session(settings: Settings, command: str, wait: bool = False) -> Iterator[Context]:
    """Open the store and catalog and hold the run lease: a second writer on the same catalog
    refuses at once naming the holder (or waits, with ``wait``)."""
    with Context.open(settings) as ctx:
        try:
            with RunLease(ctx.catalog, command, timeout=settings.LEASE_TIMEOUT, wait=wait) as lease:
                ctx.lease = lease
                yield ctx
        finally:
            ctx.lease = None
