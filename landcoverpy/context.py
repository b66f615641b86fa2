"""What every stage needs: settings, the object store and the catalog (opened once, at the edge)."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

from landcoverpy.catalog import Catalog, open_catalog
from landcoverpy.config import Settings
from landcoverpy.sharing import make_public, withdraw_public
from landcoverpy.storage import ObjectStore, open_store


@dataclass
class Context:
    """Settings, store and catalog of one command or notebook session; ``with Context.open(settings)
    as ctx:`` closes the catalog at the end."""

    settings: Settings
    store: ObjectStore
    catalog: Catalog
    lease: Any = None  # the RunLease this command holds (landcoverpy.assets.lease), if any

    @classmethod
    def open(cls, settings: Settings) -> Context:
        return cls(settings=settings, store=open_store(settings), catalog=open_catalog(settings))

    def bucket(self, name: str) -> str:
        return self.settings.bucket_names()[name]

    def ensure_buckets(self) -> None:
        for bucket in self.settings.bucket_names().values():
            self.store.ensure_bucket(bucket)
        if not self.settings.uses_s3:
            return
        maps = self.settings.MINIO_BUCKET_CLASSIFICATIONS
        # public with MINIO_PUBLIC_MAPS; turned off again, private again
        policy = make_public if self.settings.MINIO_PUBLIC_MAPS else withdraw_public
        self.store.calling(lambda: policy(self.settings, maps), f"the public-read policy of {maps}")

    def check_lease(self) -> None:
        """Before a step that replaces or removes objects: raise when this run's lease was
        taken over by another run (no-op for library use without a lease)."""
        if self.lease is not None:
            self.lease.ensure_held()

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
