"""The catalog never vouches for an object that is not there.

Every record names the objects it stands for (:func:`objects_of`). Before a stage reuses a
record it checks them (:func:`reusable`: one HEAD or stat per object, sizes compared where
recorded); a missing or truncated object makes the record stale: the damaged objects and the
record go, and the stage rebuilds the asset from its inputs. :func:`verify` walks a whole
catalog and store: records whose objects are missing, truncated or (with checksums) altered, and
objects no record owns (orphans), which :func:`prune_orphans` removes.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from landcoverpy import records
from landcoverpy.assets import keys
from landcoverpy.context import Context
from landcoverpy.records import (
    AbundanceDatasetRecord,
    AbundanceModelRecord,
    CompositeRecord,
    DemRecord,
    HierarchyRecord,
    MapRecord,
    MemberRecord,
    ModisRecord,
    ProductRecord,
    Record,
    StoredObject,
    TrainingDatasetRecord,
)
from landcoverpy.storage import ObjectStore, join_key

log = logging.getLogger(__name__)

MISSING, TRUNCATED, ALTERED, ORPHAN = "missing", "size differs", "checksum differs", "orphan"
# maps-bucket folders every run republishes (aliases, STAC, reports): owned by the workflow itself
PUBLISHED_ROOTS = (keys.LATEST, keys.STAC_ROOT, keys.REPORTS)


@dataclass(frozen=True)
class ObjectRef:
    """An object a record stands for, with what was recorded about it."""

    bucket: str
    key: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Problem:
    """One thing wrong: a record's object missing, truncated or altered, or an orphan object."""

    issue: str
    bucket: str
    key: str
    collection: str = ""
    record_id: str = ""
    expected: str = ""
    found: str = ""

    @property
    def repairable(self) -> bool:
        return self.issue != ORPHAN


def _ref(obj: StoredObject) -> ObjectRef:
    return ObjectRef(obj.bucket, obj.key, obj.size, obj.sha256)


def objects_of(record: Record) -> list[ObjectRef]:
    """The objects ``record`` stands for (a hierarchy's are its members' models: see
    :func:`members_of`)."""
    if isinstance(record, ProductRecord):
        return [_ref(b) for b in record.bands.values()]
    if isinstance(record, CompositeRecord):
        return [_ref(o) for o in record.layers().values()] + [_ref(record.valid_count)]
    if isinstance(record, DemRecord):
        return [_ref(o) for o in record.layers.values()]
    if isinstance(record, TrainingDatasetRecord):
        return [ObjectRef(record.bucket, record.key, record.size, record.table_sha256)]
    if isinstance(record, AbundanceDatasetRecord):
        return [ObjectRef(record.bucket, record.key, None, record.table_sha256)]
    if isinstance(record, MemberRecord):
        return [ObjectRef(record.bucket, record.key)]
    if isinstance(record, AbundanceModelRecord):
        return [ObjectRef(record.bucket, join_key(record.prefix, "metadata.json"))]
    if isinstance(record, MapRecord):
        refs = []
        for out in record.outputs.values():
            refs.append(ObjectRef(out.bucket, out.key, out.size, out.sha256))
            refs.extend(ObjectRef(out.bucket, k) for k in out.object_keys() if k != out.key)
        refs.extend(_ref(v) for v in record.vectors.values())
        refs.extend(_ref(v) for v in record.attachments.values())
        return refs
    if isinstance(record, ModisRecord):
        return [_ref(record.raw), _ref(record.reflectance)]
    return []


def members_of(ctx: Context, hierarchy: HierarchyRecord) -> tuple[list[MemberRecord], list[str]]:
    """A hierarchy's member records, and the ids of those missing from the catalog."""
    found, missing = [], []
    for mid in [hierarchy.category_model, *hierarchy.subcategory_models.values()]:
        member = records.load(ctx.catalog, MemberRecord, mid)
        if member is None:
            missing.append(mid)
        else:
            found.append(member)
    return found, missing


def sha256_of(store: ObjectStore, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    with store.open(bucket, key) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_object(
    store: ObjectStore, ref: ObjectRef, size: int | None, checksums: bool = False, collection: str = "", rid: str = ""
) -> Problem | None:
    """What is wrong with ``ref`` given the store's ``size`` for it (None: not there)."""
    where = {"bucket": ref.bucket, "key": ref.key, "collection": collection, "record_id": rid}
    if size is None:
        return Problem(MISSING, **where)
    if ref.size is not None and size != ref.size:
        return Problem(TRUNCATED, expected=f"{ref.size} B", found=f"{size} B", **where)
    if checksums and ref.sha256:
        found = sha256_of(store, ref.bucket, ref.key)
        if found != ref.sha256:
            return Problem(ALTERED, expected=ref.sha256[:12], found=found[:12], **where)
    return None


def check(ctx: Context, record: Record, checksums: bool = False) -> list[Problem]:
    """What is wrong with the objects of ``record`` (one HEAD/stat each; hashes with
    ``checksums``). A hierarchy is checked through its members."""
    if isinstance(record, HierarchyRecord):
        members, missing = members_of(ctx, record)
        problems = [Problem(MISSING, "", "", MemberRecord.COLLECTION, mid) for mid in missing]
        for member in members:
            problems += check(ctx, member, checksums)
        return problems
    out = []
    for ref in objects_of(record):
        problem = check_object(
            ctx.store, ref, ctx.store.stat(ref.bucket, ref.key), checksums, record.COLLECTION, record.id
        )
        if problem is not None:
            out.append(problem)
    return out


def discard(ctx: Context, record: Record, problems: list[Problem], everything: bool = False) -> list[Record]:
    """Make ``record`` stale so the stage that made it makes it again: its record goes, with its
    damaged objects (a truncated object would otherwise pass for done). Intact objects stay for
    the rebuild to resume from (a composite's finished layers), unless ``everything``: then every
    object in the record's own folders goes too (``verify --repair``: nothing is left unowned).
    Returns the records discarded (a hierarchy's members with it)."""
    ctx.check_lease()
    for p in problems:
        if p.issue in (TRUNCATED, ALTERED) and p.key:
            ctx.store.delete(p.bucket, p.key)
    stale: list[Record] = [record]
    if isinstance(record, HierarchyRecord):
        stale += members_of(ctx, record)[0]
    for rec in stale:
        if everything:
            for bucket, owned in owned_prefixes(rec, ctx.settings.bucket_names()):
                if owned.endswith("/"):
                    ctx.store.delete_prefix(bucket, owned)
                else:
                    ctx.store.delete(bucket, owned)
        ctx.catalog.delete(rec.COLLECTION, rec.id)
    return stale


def reusable(ctx: Context, record: Record) -> bool:
    """True when every object of ``record`` is in the store as recorded; otherwise the record is
    discarded (logged) and the caller rebuilds it."""
    problems = check(ctx, record)
    if not problems:
        return True
    first = problems[0]
    log.warning(
        "%s %s: %s%s; rebuilding it",
        record.COLLECTION.rstrip("s"),
        record.id,
        f"{first.bucket}/{first.key} {first.issue}" if first.key else f"{first.record_id} {first.issue}",
        f" (and {len(problems) - 1} more)" if len(problems) > 1 else "",
    )
    discard(ctx, record, problems)
    return False


# Verifying a whole catalog and store -----------------------------------------------------------


@dataclass
class Verification:
    """What ``verify`` found: problems of records, orphan objects, and what was looked at."""

    problems: list[Problem] = field(default_factory=list)
    records: int = 0
    objects: int = 0
    stale: list[Record] = field(default_factory=list)

    @property
    def orphans(self) -> list[Problem]:
        return [p for p in self.problems if p.issue == ORPHAN]

    @property
    def damaged(self) -> list[Problem]:
        return [p for p in self.problems if p.issue != ORPHAN]

    @property
    def ok(self) -> bool:
        return not self.problems


def record_kind(collection: str, doc: dict[str, Any]) -> type[Record] | None:
    """The record kind of a catalog document (several kinds share the datasets and models
    collections); None for collections that own no objects (runs, leases)."""
    if collection == "datasets":
        return AbundanceDatasetRecord if doc.get("kind") == "abundance" else TrainingDatasetRecord
    if collection == "models":
        level = str(doc.get("level", ""))
        if level == "hierarchy":
            return HierarchyRecord
        return AbundanceModelRecord if level.startswith("abundance") else MemberRecord
    kinds: dict[str, type[Record]] = {
        "products": ProductRecord,
        "composites": CompositeRecord,
        "dems": DemRecord,
        "maps": MapRecord,
        "modis": ModisRecord,
    }
    return kinds.get(collection)


def _all_records(ctx: Context) -> Iterator[Record]:
    for collection in ("products", "composites", "dems", "datasets", "models", "maps", "modis"):
        for doc in ctx.catalog.find(collection):
            kind = record_kind(collection, doc)
            if kind is not None:
                yield records.from_doc(kind, doc)


def verify(ctx: Context, checksums: bool = False, buckets: Iterable[str] | None = None) -> Verification:
    """Every record's objects against one listing per bucket (sizes; hashes with ``checksums``),
    then every object of the workflow's buckets that no record owns."""
    result = Verification()
    listings: dict[str, dict[str, int]] = {}

    def size_of(bucket: str, key: str) -> int | None:
        if bucket not in listings:
            listings[bucket] = ctx.store.list_sizes(bucket)
        return listings[bucket].get(key)

    names = ctx.settings.bucket_names()
    owned: dict[str, set[str]] = {}  # bucket -> owned keys and folder prefixes ("…/")
    for record in _all_records(ctx):
        result.records += 1
        if isinstance(record, HierarchyRecord):
            _, missing = members_of(ctx, record)
            found = [Problem(MISSING, "", "", MemberRecord.COLLECTION, mid) for mid in missing]
        else:
            found = []
            for ref in objects_of(record):
                result.objects += 1
                problem = check_object(
                    ctx.store, ref, size_of(ref.bucket, ref.key), checksums, record.COLLECTION, record.id
                )
                if problem is not None:
                    found.append(problem)
        for bucket, prefix in owned_prefixes(record, names):
            owned.setdefault(bucket, set()).add(prefix)
        if found:
            result.problems += found
            result.stale.append(record)
    for logical in buckets or ("products", "composites", "dem", "datasets", "models", "classifications"):
        bucket = names[logical]
        if bucket not in listings:
            listings[bucket] = ctx.store.list_sizes(bucket)
        mine = owned.get(bucket, set())
        for key in sorted(listings[bucket]):
            if logical == "classifications" and key.split("/", 1)[0] in PUBLISHED_ROOTS:
                continue
            if not _owned(key, mine):
                result.problems.append(Problem(ORPHAN, bucket, key, found=f"{listings[bucket][key]} B"))
    return result


def owned_prefixes(record: Record, buckets: dict[str, str]) -> list[tuple[str, str]]:
    """(bucket, key or folder ending in "/") that ``record`` owns: its objects, and the folder
    that holds them with their companions (done markers, metrics, quicklooks) where the folder
    is the record's own."""
    if isinstance(record, ProductRecord):
        prefix = keys.product_prefix(record.tile, record.product_id)
        out = [(b.bucket, prefix + "/") for b in record.bands.values()]
        return out + [(buckets["composites"], join_key("masks", prefix) + "/")]  # its cloud masks
    if isinstance(record, (MemberRecord, AbundanceModelRecord)):
        return [(record.bucket, record.prefix.rstrip("/") + "/")]
    if isinstance(record, (CompositeRecord, DemRecord, MapRecord)):
        return [(ref.bucket, posixpath.dirname(ref.key) + "/") for ref in objects_of(record)]
    return [(ref.bucket, ref.key) for ref in objects_of(record)]


def _owned(key: str, owned: set[str]) -> bool:
    return key in owned or any(key.startswith(p) for p in owned if p.endswith("/") and p != "/")


def repair(ctx: Context, found: Verification) -> list[Record]:
    """Discard every stale record ``verify`` found with all its objects, so that the stage that
    made each one makes it again; returns the records discarded."""
    gone: list[Record] = []
    for record in found.stale:
        damaged = [p for p in found.damaged if p.record_id == record.id]
        gone += discard(ctx, record, damaged, everything=True)
    return gone


def prune_orphans(ctx: Context, found: Verification) -> int:
    """Delete the orphan objects ``verify`` listed."""
    ctx.check_lease()
    for p in found.orphans:
        ctx.store.delete(p.bucket, p.key)
    return len(found.orphans)
