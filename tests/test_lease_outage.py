"""The run lease survives a catalog outage shorter than its timeout, and a run whose lease was
really taken over writes nothing further to the catalog (MongoDB through tests/faultproxy.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from landcoverpy.assets.lease import COLLECTION, LeaseHeldError, LeaseLostError, RunLease
from landcoverpy.catalog import MongoCatalog
from tests import servers


@pytest.fixture()
def proxied(mongo_server: servers.Server, server_logs: Path) -> Iterator[tuple[servers.FaultProxy, str]]:
    with servers.fault_proxy(mongo_server.port, server_logs) as proxy:
        yield proxy, f"lease_{uuid.uuid4().hex[:6]}"


def catalog(port: int, database: str, tolerance: float = 60.0) -> MongoCatalog:
    return MongoCatalog("127.0.0.1", port, database, timeout=2.0, tolerance=tolerance).connect()


def wait_for(condition, deadline: float = 90.0) -> bool:  # type: ignore[no-untyped-def]
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_catalog_outage_shorter_than_the_lease_timeout_keeps_the_lease(
    proxied: tuple[servers.FaultProxy, str], mongo_server: servers.Server
) -> None:
    proxy, database = proxied
    run_catalog = catalog(proxy.port, database)
    direct = catalog(mongo_server.port, database)
    lease = RunLease(run_catalog, "landcoverpy run", timeout=20.0).acquire()  # heartbeat every 5 s
    try:
        before = float(direct.get(COLLECTION, "workflow")["heartbeat"])  # type: ignore[index]
        proxy.down(8.0)  # at least one heartbeat falls in the outage
        assert wait_for(lambda: not proxy.status()["down"])
        # the heartbeat resumes through the proxy once the catalog answers again
        assert wait_for(lambda: float(direct.get(COLLECTION, "workflow")["heartbeat"]) > before + 8.0)  # type: ignore[index]
        assert not lease.lost
        lease.ensure_held()
        run_catalog.upsert("maps", {"_id": "written-after-the-outage", "tile": "18SVG", "kind": "classification"})
        with pytest.raises(LeaseHeldError):  # fresh, so another run is refused
            RunLease(direct, "landcoverpy classify", timeout=20.0).acquire()
    finally:
        lease.release()
    assert direct.get(COLLECTION, "workflow") is None


def test_a_run_that_lost_its_lease_writes_nothing_further(
    proxied: tuple[servers.FaultProxy, str], mongo_server: servers.Server
) -> None:
    _, database = proxied
    stalled_catalog = catalog(mongo_server.port, database)
    other_catalog = catalog(mongo_server.port, database)
    stalled = RunLease(stalled_catalog, "stalled", timeout=1.0).acquire()
    stalled._stop.set()  # a holder whose heartbeats stopped for longer than the timeout
    stalled._thread.join()  # type: ignore[union-attr]
    with RunLease(other_catalog, "next", timeout=1.0, wait=True, poll=0.05, max_wait=60):
        assert not stalled._beat_once()  # the stalled run learns it lost the lease
        with pytest.raises(LeaseLostError, match="lost the catalog lease"):
            stalled_catalog.upsert("maps", {"_id": "late-write", "tile": "18SVG", "kind": "classification"})
        assert other_catalog.get("maps", "late-write") is None
        other_catalog.upsert("maps", {"_id": "holder-write", "tile": "18SVG", "kind": "classification"})
    stalled.release()
