"""Typed catalog records: documents written by the previous version (fixtures, taken from real
catalogs of the demo and the test scenes before records carried a schema version) still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from landcoverpy import records
from landcoverpy.catalog import EmbeddedCatalog
from landcoverpy.errors import CatalogError

FIXTURES = Path(__file__).parent / "fixtures" / "catalog_v1"


def v1_documents() -> dict[str, list[dict]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))}


def test_the_fixtures_cover_every_kind() -> None:
    docs = v1_documents()
    assert set(docs) == {k.COLLECTION for k in records.KINDS}
    assert all("schema_version" not in d for ds in docs.values() for d in ds)
    kinds = {(c, d.get("kind") or d.get("level")) for c, ds in docs.items() for d in ds}
    assert {("maps", "classification"), ("maps", "mosaic"), ("maps", "abundance-N1")} <= kinds
    assert {("models", "hierarchy"), ("models", "category"), ("models", "subcategory")} <= kinds
    assert ("datasets", "abundance") in kinds


def test_a_previous_version_catalog_loads_into_typed_records(tmp_path: Path) -> None:
    catalog = EmbeddedCatalog(tmp_path / "catalog.sqlite")
    docs = v1_documents()
    for collection, ds in docs.items():
        for d in ds:
            catalog.upsert(collection, d)
    for kind in records.KINDS:
        loaded = records.find(catalog, kind)
        assert len(loaded) == len(docs[kind.COLLECTION]) > 0
        for rec in loaded:
            assert isinstance(rec, kind) and rec.schema_version == records.SCHEMA_VERSION
            stored = next(d for d in docs[kind.COLLECTION] if d["_id"] == rec.id)
            # nothing is lost: the record's document is the stored one, plus its schema version
            assert rec.to_doc() | {"schema_version": 1} == stored | {"schema_version": 1}
    # attributes, typed: the classification map's layers and the composite's bands
    cmap = next(m for m in records.find(catalog, records.MapRecord) if m.kind == "classification")
    assert cmap.outputs["classification"].key.endswith("classification.tif") and cmap.grid
    comp = records.find(catalog, records.CompositeRecord)[0]
    assert {"B02", "B04", "B08"} <= set(comp.bands) and comp.bands["B04"].bucket
    hierarchy = next(m for m in records.find(catalog, records.ModelRecord) if m.level == "hierarchy")
    assert hierarchy.category_model and hierarchy.metrics["category"]["kappa"] is not None
    # saved again, a record carries the current version and reads back the same
    records.save(catalog, comp)
    assert catalog.get("composites", comp.id)["schema_version"] == records.SCHEMA_VERSION  # type: ignore[index]
    assert records.load(catalog, records.CompositeRecord, comp.id) == comp
    catalog.close()


def specific_kind(collection: str, doc: dict) -> type[records.Record]:
    """The typed kind a stage reads a document as (one collection can hold several kinds)."""
    if collection == "models":
        level = doc["level"]
        if level == "hierarchy":
            return records.HierarchyRecord
        return records.MemberRecord if level in ("category", "subcategory") else records.AbundanceModelRecord
    if collection == "datasets":
        return records.AbundanceDatasetRecord if doc.get("kind") == "abundance" else records.TrainingDatasetRecord
    return records.KIND_OF[collection]


def test_every_previous_version_document_loads_into_its_specific_kind() -> None:
    for collection, docs in v1_documents().items():
        for doc in docs:
            kind = specific_kind(collection, doc)
            rec = records.from_doc(kind, doc)
            assert rec.to_doc() | {"schema_version": 1} == doc | {"schema_version": 1}, (collection, rec.id)
    hierarchy = records.from_doc(
        records.HierarchyRecord, next(d for d in v1_documents()["models"] if d["level"] == "hierarchy")
    )
    assert 0 <= hierarchy.metrics.category.kappa <= 1 and hierarchy.lc_labels and hierarchy.model_type
    member = records.from_doc(
        records.MemberRecord, next(d for d in v1_documents()["models"] if d["level"] == "category")
    )
    assert member.key.endswith("model.joblib") and member.hierarchy == hierarchy.id
    abundance = next(d for d in v1_documents()["datasets"] if d.get("kind") == "abundance")
    assert records.from_doc(records.AbundanceDatasetRecord, abundance).levels


def test_products_acquired_before_offsets_were_recorded_get_the_baseline_rule() -> None:
    doc = next(d for d in v1_documents()["products"] if d["level"] == "L2A")
    old = {k: v for k, v in doc.items() if k not in ("offsets", "product_id")}
    for baseline, offset in (("02.09", 0.0), ("04.00", -1000.0), ("05.10", -1000.0)):
        rec = records.from_doc(records.ProductRecord, old | {"processing_baseline": baseline})
        assert rec.product_id == doc["_id"]
        assert set(rec.offsets) == set(doc["bands"]) - {"SCL"}
        assert set(rec.offsets.values()) == {offset}


def test_a_newer_schema_is_refused_naming_the_upgrade() -> None:
    doc = v1_documents()["dems"][0] | {"schema_version": records.SCHEMA_VERSION + 1}
    with pytest.raises(CatalogError, match="upgrade landcoverpy"):
        records.from_doc(records.DemRecord, doc)


def test_a_stage_cannot_store_a_malformed_document(tmp_path: Path) -> None:
    catalog = EmbeddedCatalog(tmp_path / "catalog.sqlite")
    doc = next(d for d in v1_documents()["maps"] if d["kind"] == "classification")
    broken = doc | {"outputs": {"classification": {"bucket": "classification-maps"}}}  # no key
    with pytest.raises(ValidationError):
        records.store_doc(catalog, records.MapRecord, broken)
    assert catalog.get("maps", doc["_id"]) is None
    catalog.close()
