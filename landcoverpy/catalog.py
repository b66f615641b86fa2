"""Asset metadata catalog: one interface, two backends (MongoDB and an embedded SQLite file).

Records are JSON documents with a string ``_id`` (derived from the asset's inputs so writes are
idempotent). Queries are equality filters on (dotted) fields, with ``{"$in": [...]}`` allowed.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pymongo
import pymongo.errors as perr

from landcoverpy.config import Settings
from landcoverpy.errors import (
    AuthenticationError,
    ConfigurationError,
    LandcoverError,
    ServiceUnavailableError,
    StorageError,
)
from landcoverpy.faults import DEFAULT_TOLERANCE, Service, ride_out

log = logging.getLogger(__name__)

COLLECTIONS = ("products", "composites", "dems", "modis", "datasets", "models", "maps", "runs", "leases")

# (fields, unique) per logical collection: the indexes the stage queries need.
INDEXES: dict[str, list[tuple[tuple[str, ...], bool]]] = {
    "products": [(("product_id",), True), (("tile", "sensing_time"), False), (("tile", "season"), False)],
    "composites": [(("tile", "season"), False)],
    "dems": [(("tile",), False)],
    "modis": [(("granule_id",), True), (("tile", "date"), False)],
    "datasets": [(("created",), False)],
    "models": [(("level", "category"), False)],
    "maps": [(("tile", "kind"), False), (("tile", "hierarchy"), False)],
    "runs": [(("started",), False)],
    "leases": [],
}

Filter = dict[str, Any]


T = TypeVar("T")


class DuplicateRecordError(LandcoverError):
    """A record would violate a unique index."""


class Catalog(ABC):
    """Collections of JSON documents keyed by ``_id``."""

    def __init__(self, names: dict[str, str] | None = None) -> None:
        self.names = {c: c for c in COLLECTIONS} | (names or {})
        # called before every write except the lease's own: the run lease installs its check
        # here, so a run whose lease was taken over writes nothing further
        self.write_guard: Callable[[], None] | None = None

    def _check_write(self, collection: str) -> None:
        if self.write_guard is not None and collection != "leases":
            self.write_guard()

    def _name(self, collection: str) -> str:
        if collection not in self.names:
            raise ValueError(f"unknown catalog collection {collection!r}; known: {', '.join(COLLECTIONS)}")
        return self.names[collection]

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def upsert(self, collection: str, doc: dict[str, Any]) -> None:
        """Insert or replace the record with ``doc['_id']``."""

    @abstractmethod
    def insert(self, collection: str, doc: dict[str, Any]) -> None:
        """Insert; DuplicateRecordError if ``_id`` or a unique field exists."""

    @abstractmethod
    def replace_if(self, collection: str, record_id: str, expected: Filter, doc: dict[str, Any]) -> bool:
        """Atomically replace the record ``record_id`` with ``doc`` only if it matches ``expected``
        (equality filter); True when it was replaced. The compare-and-swap of the run lease."""

    @abstractmethod
    def get(self, collection: str, record_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def find(
        self,
        collection: str,
        filter: Filter | None = None,
        sort: list[tuple[str, int]] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]: ...

    @abstractmethod
    def count(self, collection: str, filter: Filter | None = None) -> int: ...

    @abstractmethod
    def delete(self, collection: str, record_id: str) -> bool: ...

    @abstractmethod
    def delete_many(self, collection: str, filter: Filter) -> int: ...

    def close(self) -> None:  # noqa: B027 - optional
        pass

    def counts(self) -> dict[str, int]:
        return {c: self.count(c) for c in COLLECTIONS}

    def exists(self, collection: str, record_id: str) -> bool:
        return self.get(collection, record_id) is not None


def _require_id(doc: dict[str, Any]) -> str:
    if "_id" not in doc or not isinstance(doc["_id"], str) or not doc["_id"]:
        raise ValueError("catalog records need a non-empty string '_id'")
    return doc["_id"]


class EmbeddedCatalog(Catalog):
    """A SQLite file (WAL mode): one table per collection, ``(id, doc JSON)``, expression indexes
    on the indexed fields. Safe across processes; survives restarts."""

    def __init__(self, path: str | Path, names: dict[str, str] | None = None) -> None:
        super().__init__(names)
        self.path = Path(path).expanduser().resolve()
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            with conn:
                for logical in COLLECTIONS:
                    self._create(conn, logical)
        except (OSError, sqlite3.OperationalError) as exc:
            raise StorageError(
                f"Cannot open the embedded catalog at {self.path}: {exc}. Set LANDCOVERPY_HOME to a writable directory."
            ) from None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "names": self.names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.names = state["path"], state["names"]
        self._local = threading.local()
        self.write_guard = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _table(self, collection: str) -> str:
        name = self._name(collection)
        return '"' + name.replace('"', '""') + '"'

    def _create(self, conn: sqlite3.Connection, logical: str) -> None:
        table = self._table(logical)
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
        for fields, unique in INDEXES.get(logical, []):
            idx = f'"ix_{self._name(logical)}_{"_".join(fields)}"'
            cols = ", ".join(f"json_extract(doc, '$.{f}')" for f in fields)
            conn.execute(f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {idx} ON {table} ({cols})")

    def describe(self) -> str:
        return f"embedded catalog {self.path}"

    @staticmethod
    def _where(filter: Filter | None) -> tuple[str, list[Any]]:
        if not filter:
            return "", []
        clauses: list[str] = []
        params: list[Any] = []
        for field, value in filter.items():
            expr = "id" if field == "_id" else f"json_extract(doc, '$.{field}')"
            if isinstance(value, dict) and set(value) == {"$in"}:
                values = list(value["$in"])
                if not values:
                    clauses.append("0")
                    continue
                clauses.append(f"{expr} IN ({', '.join('?' for _ in values)})")
                params.extend(_sql_value(v) for v in values)
            elif isinstance(value, dict):
                raise ValueError(f"unsupported filter operator in {value!r}")
            elif value is None:
                clauses.append(f"{expr} IS NULL")
            else:
                clauses.append(f"{expr} = ?")
                params.append(_sql_value(value))
        return " WHERE " + " AND ".join(clauses), params

    def upsert(self, collection: str, doc: dict[str, Any]) -> None:
        self._check_write(collection)
        record_id = _require_id(doc)
        try:
            self._conn().execute(
                f"INSERT INTO {self._table(collection)} (id, doc) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                (record_id, json.dumps(doc, sort_keys=True)),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateRecordError(f"{collection} record {record_id!r}: {exc}") from None

    def insert(self, collection: str, doc: dict[str, Any]) -> None:
        self._check_write(collection)
        record_id = _require_id(doc)
        try:
            self._conn().execute(
                f"INSERT INTO {self._table(collection)} (id, doc) VALUES (?, ?)",
                (record_id, json.dumps(doc, sort_keys=True)),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateRecordError(f"{collection} record {record_id!r} already exists: {exc}") from None

    def replace_if(self, collection: str, record_id: str, expected: Filter, doc: dict[str, Any]) -> bool:
        self._check_write(collection)
        if _require_id(doc) != record_id:
            raise ValueError("replace_if cannot change a record's _id")
        where, params = self._where({"_id": record_id, **expected})
        cur = self._conn().execute(
            f"UPDATE {self._table(collection)} SET doc = ?{where}", [json.dumps(doc, sort_keys=True), *params]
        )
        return cur.rowcount == 1

    def get(self, collection: str, record_id: str) -> dict[str, Any] | None:
        row = self._conn().execute(f"SELECT doc FROM {self._table(collection)} WHERE id = ?", (record_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def find(
        self,
        collection: str,
        filter: Filter | None = None,
        sort: list[tuple[str, int]] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        where, params = self._where(filter)
        sql = f"SELECT doc FROM {self._table(collection)}{where}"
        if sort:
            sql += " ORDER BY " + ", ".join(f"json_extract(doc, '$.{f}') {'DESC' if d < 0 else 'ASC'}" for f, d in sort)
        else:
            sql += " ORDER BY id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [json.loads(r[0]) for r in self._conn().execute(sql, params)]

    def count(self, collection: str, filter: Filter | None = None) -> int:
        where, params = self._where(filter)
        return int(self._conn().execute(f"SELECT COUNT(*) FROM {self._table(collection)}{where}", params).fetchone()[0])

    def delete(self, collection: str, record_id: str) -> bool:
        self._check_write(collection)
        cur = self._conn().execute(f"DELETE FROM {self._table(collection)} WHERE id = ?", (record_id,))
        return cur.rowcount > 0

    def delete_many(self, collection: str, filter: Filter) -> int:
        self._check_write(collection)
        where, params = self._where(filter)
        return self._conn().execute(f"DELETE FROM {self._table(collection)}{where}", params).rowcount

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _sql_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


class MongoCatalog(Catalog):
    """MongoDB through pymongo. Picklable: the client is rebuilt lazily in each process."""

    def __init__(
        self,
        host: str,
        port: int,
        database: str,
        username: str | None = None,
        password: str | None = None,
        names: dict[str, str] | None = None,
        timeout: float = 5.0,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        super().__init__(names)
        self.host, self.port, self.database = host, port, database
        self.username, self.password, self.timeout = username, password, timeout
        self.tolerance = tolerance
        self.service = Service(f"MongoDB at {host}:{port}", "MONGO_HOST / MONGO_PORT")
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["write_guard"] = None
        return state

    def describe(self) -> str:
        return f"MongoDB at {self.host}:{self.port}/{self.database}"

    @property
    def db(self) -> Any:
        if self._client is None:
            kwargs: dict[str, Any] = {
                "serverSelectionTimeoutMS": int(self.timeout * 1000),
                "connectTimeoutMS": int(self.timeout * 1000),
                "socketTimeoutMS": int(max(self.timeout, 30) * 1000),
                "directConnection": True,
            }
            if self.username:
                kwargs |= {"username": self.username, "password": self.password or ""}
            self._client = pymongo.MongoClient(self.host, self.port, **kwargs)
        return self._client[self.database]

    def connect(self) -> MongoCatalog:
        """Check the server answers and accepts the credentials, then create the indexes."""

        def create_indexes() -> None:
            for logical in COLLECTIONS:
                coll = self.db[self._name(logical)]
                for fields, unique in INDEXES.get(logical, []):
                    coll.create_index([(f, 1) for f in fields], unique=unique, **({"sparse": True} if unique else {}))

        try:
            self.db.command("ping")  # once: a server that is not there at all is a setting to fix
            self._ride("creating indexes", create_indexes)
        except perr.OperationFailure as exc:
            if exc.code in (13, 18) or "auth" in str(exc).lower():
                # never the server's reply: it is noise ($clusterTime...) and may echo the user
                raise AuthenticationError(
                    f"MongoDB at {self.host}:{self.port} rejected the credentials (error code {exc.code}). "
                    "Check MONGO_USERNAME / MONGO_PASSWORD."
                ) from None
            raise ServiceUnavailableError(
                f"MongoDB at {self.host}:{self.port} refused the request (error code {exc.code}). "
                "Check MONGO_DB and the user's roles."
            ) from None
        except perr.PyMongoError as exc:
            raise ServiceUnavailableError(
                f"MongoDB at {self.host}:{self.port} is unreachable ({type(exc).__name__}). "
                "Check MONGO_HOST / MONGO_PORT and that the server is running."
            ) from None
        return self

    def _coll(self, collection: str) -> Any:
        return self.db[self._name(collection)]

    def _ride(self, what: str, fn: Callable[[], T]) -> T:
        """One catalog operation under the fault policy: an election, a restart or a dropped
        connection (pymongo's AutoReconnect family) is retried for up to ``tolerance`` seconds.
        Every operation here is idempotent (replace by _id, conditional replace, delete by filter,
        an insert whose retry finds its own document), so a retry after a lost reply is safe."""
        return ride_out(fn, service=self.service, what=what, tolerance=self.tolerance)

    def upsert(self, collection: str, doc: dict[str, Any]) -> None:
        self._check_write(collection)
        rid = _require_id(doc)
        try:
            self._ride(
                f"saving {collection} {rid}",
                lambda: self._coll(collection).replace_one({"_id": rid}, doc, upsert=True),
            )
        except perr.DuplicateKeyError as exc:
            raise DuplicateRecordError(f"{collection} record {rid!r}: {exc}") from None

    def insert(self, collection: str, doc: dict[str, Any]) -> None:
        self._check_write(collection)
        rid = _require_id(doc)
        attempts = {"n": 0}

        def insert_once() -> None:
            attempts["n"] += 1
            try:
                self._coll(collection).insert_one(dict(doc, _id=rid))
            except perr.DuplicateKeyError:
                # a retry whose first try was written before its reply was lost finds itself
                if attempts["n"] > 1 and self._coll(collection).find_one({"_id": rid}) == dict(doc, _id=rid):
                    return
                raise

        try:
            self._ride(f"saving {collection} {rid}", insert_once)
        except perr.DuplicateKeyError as exc:
            raise DuplicateRecordError(f"{collection} record {rid!r} already exists: {exc}") from None

    def replace_if(self, collection: str, record_id: str, expected: Filter, doc: dict[str, Any]) -> bool:
        self._check_write(collection)
        if _require_id(doc) != record_id:
            raise ValueError("replace_if cannot change a record's _id")
        attempts = {"n": 0}

        def replace_once() -> bool:
            attempts["n"] += 1
            result = self._coll(collection).replace_one({"_id": record_id, **expected}, doc, upsert=False)
            if int(result.matched_count) == 1:
                return True
            # a retry whose first try was applied before its reply was lost finds its own document
            return attempts["n"] > 1 and self._coll(collection).find_one({"_id": record_id}) == doc

        return self._ride(f"updating {collection} {record_id}", replace_once)

    def get(self, collection: str, record_id: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = self._ride(
            f"reading {collection} {record_id}", lambda: self._coll(collection).find_one({"_id": record_id})
        )
        return doc

    def find(
        self,
        collection: str,
        filter: Filter | None = None,
        sort: list[tuple[str, int]] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        def query() -> list[dict[str, Any]]:
            cursor = self._coll(collection).find(filter or {})
            cursor = cursor.sort(sort or [("_id", 1)])
            if limit:
                cursor = cursor.limit(int(limit))
            return list(cursor)

        return self._ride(f"reading {collection}", query)

    def count(self, collection: str, filter: Filter | None = None) -> int:
        return self._ride(f"counting {collection}", lambda: int(self._coll(collection).count_documents(filter or {})))

    def delete(self, collection: str, record_id: str) -> bool:
        self._check_write(collection)
        return self._ride(
            f"deleting {collection} {record_id}",
            lambda: int(self._coll(collection).delete_one({"_id": record_id}).deleted_count) > 0,
        )

    def delete_many(self, collection: str, filter: Filter) -> int:
        self._check_write(collection)
        return self._ride(
            f"deleting from {collection}", lambda: int(self._coll(collection).delete_many(filter).deleted_count)
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def open_catalog(settings: Settings) -> Catalog:
    """The catalog the settings select: MongoDB when MONGO_HOST is set, else embedded."""
    names = settings.collection_names()
    if settings.uses_mongo:
        if bool(settings.MONGO_USERNAME) != bool(settings.MONGO_PASSWORD):
            raise ConfigurationError("Set both MONGO_USERNAME and MONGO_PASSWORD, or neither.")
        return MongoCatalog(
            host=str(settings.MONGO_HOST),
            port=settings.MONGO_PORT,
            database=settings.MONGO_DB,
            username=settings.MONGO_USERNAME,
            password=settings.MONGO_PASSWORD.get_secret_value() if settings.MONGO_PASSWORD else None,
            names=names,
            timeout=settings.CONNECT_TIMEOUT,
            tolerance=settings.OUTAGE_TOLERANCE,
        ).connect()
    return EmbeddedCatalog(settings.catalog_path, names=names)
