"""Writing assets: objects with their size and checksum, the ``latest/`` aliases, pruning.

An asset's objects are written at id-addressed keys first, then its catalog record; only then is
an alias replaced (a server-side copy that appears whole or not at all). Pruning removes whole
assets (objects first, record last) and never touches the assets most recently used.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landcoverpy import records
from landcoverpy.context import Context
from landcoverpy.records import MapRecord
from landcoverpy.storage import ObjectStore

log = logging.getLogger(__name__)


def file_digest(path: str | Path, chunk: int = 8 * 2**20) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def put_file(store: ObjectStore, bucket: str, key: str, path: str | Path) -> dict[str, Any]:
    """Upload ``path`` to ``bucket/key``; the location with size and SHA-256 (for STAC's file
    extension and for checking an export against the catalog)."""
    size, sha = file_digest(path)
    store.put_file(bucket, key, path)
    return {"bucket": bucket, "key": key, "size": size, "sha256": sha}


def put_bytes(store: ObjectStore, bucket: str, key: str, data: bytes) -> dict[str, Any]:
    store.put_bytes(bucket, key, data)
    return {"bucket": bucket, "key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def publish_alias(
    ctx: Context,
    bucket: str,
    pairs: list[tuple[str, str]],
    manifest_key: str | None = None,
    manifest: dict[str, Any] | None = None,
) -> None:
    """Replace the alias keys of ``pairs`` ((source key, alias key)) by copies of the complete,
    catalogued sources; then a small JSON manifest saying which asset the alias shows."""
    ctx.check_lease()
    for src, alias in pairs:
        ctx.store.copy(bucket, src, alias)
    if manifest_key and manifest is not None:
        ctx.store.put_json(bucket, manifest_key, manifest)


@dataclass
class PruneReport:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)


def _record_objects(record: MapRecord) -> list[tuple[str, str]]:
    return [(loc.bucket, key) for loc in record.outputs.values() for key in loc.object_keys()]


def prune_maps(ctx: Context, keep: int, dry_run: bool = True) -> PruneReport:
    """Per tile (and per abundance level), keep the ``keep`` maps most recently used by a run and
    remove the others: objects first, then the record. ``dry_run`` only reports."""
    if keep < 1:
        raise ValueError("keep at least one map per tile")
    if not dry_run:
        ctx.check_lease()
    report = PruneReport()
    groups: dict[tuple[str, str], list[MapRecord]] = {}
    for rec in records.find(ctx.catalog, MapRecord):
        groups.setdefault((rec.tile, rec.kind), []).append(rec)
    for _, group in sorted(groups.items()):
        group.sort(key=lambda r: (r.last_used or r.created or "", r.id), reverse=True)
        report.kept += [r.id for r in group[:keep]]
        for rec in group[keep:]:
            report.removed.append(rec.id)
            for bucket, key in _record_objects(rec):
                report.objects.append(f"{bucket}/{key}")
                if not dry_run:
                    ctx.store.delete(bucket, key)
            if not dry_run:
                ctx.catalog.delete(MapRecord.COLLECTION, rec.id)
                log.info("pruned map %s", rec.id)
    return report
