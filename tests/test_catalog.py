"""The same catalog suite against both backends: embedded SQLite and MongoDB (secantusd)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from landcoverpy.catalog import COLLECTIONS, Catalog, DuplicateRecordError, EmbeddedCatalog, open_catalog
from landcoverpy.errors import AuthenticationError, ServiceUnavailableError
from tests import servers
from tests.conftest import make_settings


@pytest.fixture(params=["embedded", "mongo"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "embedded":
        cat = open_catalog(make_settings(tmp_path))
    else:
        server = request.getfixturevalue("mongo_server")
        cat = open_catalog(
            make_settings(tmp_path, MONGO_HOST="127.0.0.1", MONGO_PORT=server.port, MONGO_DB=f"t{uuid.uuid4().hex[:8]}")
        )
    yield cat
    cat.close()


def product(pid: str, tile: str, time: str, cloud: float) -> dict[str, object]:
    return {
        "_id": pid,
        "product_id": pid,
        "tile": tile,
        "sensing_time": time,
        "cloud": cloud,
        "season": "spring",
        "bands": {"B02": {"key": f"{pid}/B02.jp2", "resolution": 10}},
    }


def test_upsert_get_find_count_delete(catalog: Catalog) -> None:
    assert set(catalog.counts()) == set(COLLECTIONS)
    catalog.upsert("products", product("P1", "30SUF", "2021-03-02T10:00:00", 3.5))
    catalog.upsert("products", product("P2", "30SUF", "2021-03-12T10:00:00", 1.0))
    catalog.upsert("products", product("P3", "30SVF", "2021-03-05T10:00:00", 9.0))
    assert catalog.get("products", "P1")["bands"]["B02"]["resolution"] == 10
    assert catalog.get("products", "nope") is None
    assert catalog.count("products") == 3
    assert catalog.count("products", {"tile": "30SUF"}) == 2
    assert [d["_id"] for d in catalog.find("products", {"tile": "30SUF"}, sort=[("cloud", 1)])] == ["P2", "P1"]
    assert [d["_id"] for d in catalog.find("products", sort=[("sensing_time", -1)], limit=2)] == ["P2", "P3"]
    assert [d["_id"] for d in catalog.find("products", {"tile": {"$in": ["30SVF", "X"]}})] == ["P3"]
    assert [d["_id"] for d in catalog.find("products", {"bands.B02.resolution": 10, "tile": "30SVF"})] == ["P3"]

    updated = product("P1", "30SUF", "2021-03-02T10:00:00", 50.0)
    catalog.upsert("products", updated)
    assert catalog.get("products", "P1")["cloud"] == 50.0
    assert catalog.count("products") == 3

    assert catalog.delete("products", "P1")
    assert not catalog.delete("products", "P1")
    assert catalog.delete_many("products", {"tile": "30SUF"}) == 1
    assert catalog.count("products") == 1


def test_insert_refuses_duplicates(catalog: Catalog) -> None:
    catalog.insert("products", product("P1", "30SUF", "2021-03-02", 1.0))
    with pytest.raises(DuplicateRecordError):
        catalog.insert("products", product("P1", "30SUF", "2021-03-02", 1.0))
    # unique product_id even under another _id
    dup = product("P1", "30SUF", "2021-03-02", 1.0) | {"_id": "other"}
    with pytest.raises(DuplicateRecordError):
        catalog.insert("products", dup)


def test_records_need_string_ids(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="_id"):
        catalog.upsert("maps", {"tile": "x"})
    with pytest.raises(ValueError, match="unknown catalog collection"):
        catalog.upsert("bogus", {"_id": "x"})


def test_embedded_catalog_survives_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    code = (
        "import sys; from landcoverpy.catalog import EmbeddedCatalog;"
        "c = EmbeddedCatalog(sys.argv[1]);"
        "c.upsert('runs', {'_id': 'run-1', 'started': '2026-01-01', 'stages': ['acquire']});"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    code_read = (
        "import sys, json; from landcoverpy.catalog import EmbeddedCatalog;"
        "print(json.dumps(EmbeddedCatalog(sys.argv[1]).get('runs', 'run-1')))"
    )
    out = subprocess.run([sys.executable, "-c", code_read, str(path)], check=True, capture_output=True, text=True)
    assert '"stages": ["acquire"]' in out.stdout
    assert EmbeddedCatalog(path).count("runs") == 1


def test_unreachable_mongo_fails_fast_naming_the_address(tmp_path: Path) -> None:
    port = servers.free_port()
    with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port}"):
        open_catalog(make_settings(tmp_path, MONGO_HOST="127.0.0.1", MONGO_PORT=port, CONNECT_TIMEOUT=2))


def test_mongo_credentials_are_checked(tmp_path: Path, server_logs: Path) -> None:
    user, password = servers.MONGO_USER
    with servers.mongo_server(server_logs, auth=True) as server:
        good = make_settings(
            tmp_path, MONGO_HOST="127.0.0.1", MONGO_PORT=server.port, MONGO_USERNAME=user, MONGO_PASSWORD=password
        )
        cat = open_catalog(good)
        cat.upsert("runs", {"_id": "r", "started": "now"})
        assert cat.count("runs") == 1
        cat.close()
        bad = make_settings(
            tmp_path, MONGO_HOST="127.0.0.1", MONGO_PORT=server.port, MONGO_USERNAME=user, MONGO_PASSWORD="wrong"
        )
        with pytest.raises(AuthenticationError, match="MONGO_USERNAME"):
            open_catalog(bad)
