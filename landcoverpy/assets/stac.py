"""STAC publication of the catalogued assets, built from the catalog records (pystac).

Collections ``composites``, ``dem``, ``maps`` and ``abundance``, one Item per asset, with the
projection (code, shape, transform), raster (data type, nodata, scale, offset), classification
(values, names, colour hints), and file (size, checksum) extensions, and the ids of each asset's
inputs as lineage (``landcoverpy:inputs`` plus ``derived_from`` links to the inputs' Items). The
catalog is self-contained (relative links); asset hrefs point at the objects in the store
(``s3://`` or local paths), or at copies beside the Items when exported with ``copy_assets``.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pystac
from pyproj import Transformer
from rasterio.crs import CRS

from landcoverpy import __version__, records
from landcoverpy.assets import keys
from landcoverpy.context import Context
from landcoverpy.raster.grid import Grid
from landcoverpy.records import CompositeRecord, DemRecord, MapRecord, StoredObject
from landcoverpy.reports import class_colours
from landcoverpy.scratch import scratch_dir
from landcoverpy.storage import COG_MEDIA_TYPE, media_type

log = logging.getLogger(__name__)

PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
CLASSIFICATION = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
EXTENSIONS = [PROJECTION, RASTER, CLASSIFICATION, FILE]
COMPOSITE_SCALE = 1e-4  # composite bands: uint16 reflectance x 10000


def footprint(grid: Grid, per_edge: int = 5) -> tuple[dict[str, Any], list[float]]:
    """The grid's outline in WGS84 (each edge densified so the curved edges stay close) and
    its bounding box."""

    x0, y0 = grid.affine @ (0, 0)
    x1, y1 = grid.affine @ (grid.width, grid.height)
    t = np.linspace(0.0, 1.0, per_edge)[:-1]
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 + (x0 - x1) * t, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 + (y0 - y1) * t])
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat)]
    ring.append(ring[0])
    bbox = [float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def projection_fields(grid: Grid) -> dict[str, Any]:

    crs = CRS.from_user_input(grid.crs)
    epsg = crs.to_epsg()
    out: dict[str, Any] = {"proj:shape": [grid.height, grid.width], "proj:transform": list(grid.transform)}
    if epsg:
        out["proj:code"] = f"EPSG:{epsg}"
    else:
        out["proj:code"] = None
        out["proj:wkt2"] = crs.to_wkt()
    return out


def file_fields(loc: StoredObject) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if loc.size is not None:
        out["file:size"] = int(loc.size)
    if loc.sha256:
        out["file:checksum"] = "1220" + loc.sha256  # multihash: sha2-256, 32 bytes
    return out


def raster_band(
    data_type: str,
    nodata: Any,
    resolution: float,
    scale: float | None = None,
    offset: float | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    if isinstance(nodata, float) and nodata != nodata:
        nodata = "nan"  # STAC's spelling of NaN
    optional = {"nodata": nodata, "scale": scale, "offset": offset, "unit": unit or None}
    return {"data_type": data_type, "spatial_resolution": resolution} | {
        k: v for k, v in optional.items() if v is not None
    }


def class_list(names: dict[str, str], colours: dict[int, tuple[int, int, int]] | None = None) -> list[dict[str, Any]]:
    """classification:classes; ``name`` must be a machine token in v2.0, so it is ``class_{value}``
    and the exact Unicode name goes in ``title`` and ``description``."""
    out = []
    for value, name in sorted(((int(v), n) for v, n in names.items())):
        entry: dict[str, Any] = {"value": value, "name": f"class_{value}", "title": name, "description": name}
        if colours and value in colours:
            entry["color_hint"] = "{:02X}{:02X}{:02X}".format(*colours[value])
        out.append(entry)
    return out


class Hrefs:
    """Asset hrefs: the store's (``s3://bucket/key`` or a local path), or a local copy."""

    def __init__(self, ctx: Context, copy_to: Path | None = None) -> None:
        self.ctx, self.copy_to = ctx, copy_to

    def __call__(self, loc: StoredObject, item_dir: str, key: str | None = None) -> str:
        """The href of ``loc``'s object (or of ``key``, a companion in the same bucket)."""
        key = key or loc.key
        if self.copy_to is None:
            return self.ctx.store.raster_uri(loc.bucket, key)
        dest = self.copy_to / item_dir / key.rsplit("/", 1)[-1]
        if not dest.exists():
            self.ctx.store.get_file(loc.bucket, key, dest)
        return str(dest)


def _item(
    item_id: str, grid: Grid, start: str | None, end: str | None, when: str | None, properties: dict[str, Any]
) -> Any:

    geom, bbox = footprint(grid)
    props = dict(properties) | projection_fields(grid) | {"landcoverpy:version": __version__}
    if start and end:
        props |= {"start_datetime": _iso(start), "end_datetime": _iso(end, end_of_day=True)}
    stamp = dt.datetime.fromisoformat(when).astimezone(dt.UTC) if when and not (start and end) else None
    if stamp is not None and stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return pystac.Item(
        id=item_id, geometry=geom, bbox=bbox, datetime=stamp, properties=props, stac_extensions=list(EXTENSIONS)
    )


def _iso(day: str, end_of_day: bool = False) -> str:
    d = dt.date.fromisoformat(day[:10])
    t = dt.time(23, 59, 59) if end_of_day else dt.time(0, 0, 0)
    return dt.datetime.combine(d, t, tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def composite_item(rec: CompositeRecord, href: Hrefs) -> Any:

    grid = Grid.from_dict(rec.grid)
    item = _item(
        rec.id,
        grid,
        rec.season_start,
        rec.season_end,
        rec.created,
        {
            "title": f"{rec.tile} {rec.season} composite",
            "landcoverpy:kind": "composite",
            "landcoverpy:tile": rec.tile,
            "landcoverpy:season": rec.season,
            "landcoverpy:inputs": [*rec.products, *rec.series_neighbours],
            "landcoverpy:params": rec.params,
            "landcoverpy:valid_percentage": rec.valid_percentage,
        },
    )
    res = grid.resolution
    for band, loc in rec.bands.items():
        item.add_asset(
            band,
            pystac.Asset(
                href(loc, item.id),
                title=f"{band} median reflectance",
                media_type=COG_MEDIA_TYPE,
                roles=["data", "reflectance"],
                extra_fields={"raster:bands": [raster_band("uint16", 0, res, COMPOSITE_SCALE, 0.0, "1")]}
                | file_fields(loc),
            ),
        )
    for index, loc in rec.indices.items():
        item.add_asset(
            index,
            pystac.Asset(
                href(loc, item.id),
                title=f"{index} index",
                media_type=COG_MEDIA_TYPE,
                roles=["data"],
                extra_fields={"raster:bands": [raster_band("float32", float("nan"), res)]} | file_fields(loc),
            ),
        )
    loc = rec.valid_count
    item.add_asset(
        "valid_count",
        pystac.Asset(
            href(loc, item.id),
            title="valid observations",
            media_type=COG_MEDIA_TYPE,
            roles=["metadata"],
            extra_fields={"raster:bands": [raster_band("uint8", None, res)]} | file_fields(loc),
        ),
    )
    return item


def dem_item(rec: DemRecord, href: Hrefs) -> Any:

    grid = Grid.from_dict(rec.grid)
    item = _item(
        rec.id,
        grid,
        None,
        None,
        rec.created,
        {
            "title": f"{rec.tile} DEM layers",
            "landcoverpy:kind": "dem",
            "landcoverpy:tile": rec.tile,
            "landcoverpy:inputs": [s.get("key") for s in rec.sources],
        },
    )
    units = {"elevation": "m", "slope": "degree", "aspect": "degree"}
    for layer, loc in rec.layers.items():
        item.add_asset(
            layer,
            pystac.Asset(
                href(loc, item.id),
                title=layer,
                media_type=COG_MEDIA_TYPE,
                roles=["data"],
                extra_fields={
                    "raster:bands": [raster_band("float32", float("nan"), grid.resolution, unit=units.get(layer))]
                }
                | file_fields(loc),
            ),
        )
    return item


def map_item(ctx: Context, rec: MapRecord, href: Hrefs) -> Any:

    grid = rec.pixel_grid
    sources = [records.load(ctx.catalog, CompositeRecord, cid) for cid in rec.composites]
    starts = [s.season_start for s in sources if s]
    ends = [s.season_end for s in sources if s]
    item = _item(
        rec.id,
        grid,
        min(starts) if starts else None,
        max(ends) if ends else None,
        rec.created,
        {
            "title": f"{rec.tile} land cover map",
            "landcoverpy:kind": "map",
            "landcoverpy:tile": rec.tile,
            "landcoverpy:inputs": [rec.hierarchy, *rec.composites],
            "landcoverpy:model": rec.hierarchy,
            "landcoverpy:area_km2": rec.area_km2,
        },
    )
    classes = rec.classes if isinstance(rec.classes, dict) else {}
    titles = {
        "classification": "category",
        "sl_classification": "subcategory",
        "confidence": "confidence of the category (%)",
        "sl_confidence": "confidence of the subcategory (%)",
        "uncertainty": "uncertainty of the category (%)",
        "probabilities": "probability of each category (%)",
    }
    for name, loc in rec.outputs.items():
        unit = None if name in classes else "%"
        extra = loc.model_extra or {}
        fields: dict[str, Any] = {
            "raster:bands": [
                raster_band("uint8", extra.get("nodata", 0), grid.resolution, unit=unit)
                for _ in range(int(extra.get("count", 1)))
            ]
        }
        if name in classes:
            names = classes[name]
            colours = class_colours({n: int(v) for v, n in names.items()})
            fields["classification:classes"] = class_list(names, colours)
        item.add_asset(
            name,
            pystac.Asset(
                href(loc, item.id),
                title=titles.get(name, name),
                media_type=COG_MEDIA_TYPE,
                roles=["data"],
                extra_fields=fields | file_fields(loc),
            ),
        )
        if loc.quicklook:
            item.add_asset(
                f"{name}_quicklook",
                pystac.Asset(
                    href(loc, item.id, loc.quicklook),
                    title=f"{titles.get(name, name)} quicklook",
                    media_type="image/png",
                    roles=["overview"],
                ),
            )
        if loc.style:
            item.add_asset(
                f"{name}_qgis_style",
                pystac.Asset(
                    href(loc, item.id, loc.style),
                    title=f"{titles.get(name, name)} QGIS style",
                    media_type="application/xml",
                    roles=["style"],
                ),
            )
        if loc.aux:  # GDAL's category names; beside the COG when the catalog is copied
            item.add_asset(
                f"{name}_categories",
                pystac.Asset(
                    href(loc, item.id, loc.aux),
                    title=f"{titles.get(name, name)} category names (GDAL PAM)",
                    media_type="application/xml",
                    roles=["metadata"],
                ),
            )
    for name, vec in sorted(rec.vectors.items()):  # polygons after a minimum mapping unit
        stem, _, suffix = name.rpartition(".")
        layer, _, mmu = stem.rpartition("_mmu")
        item.add_asset(
            name.replace(".", "_"),
            pystac.Asset(
                href(vec, item.id),
                title=f"{titles.get(layer, layer)} polygons, minimum mapping unit {mmu} pixels ({suffix})",
                media_type=media_type(vec.key),
                roles=["data"],
                extra_fields=file_fields(vec),
            ),
        )
    return item


def change_item(rec: MapRecord, href: Hrefs) -> Any:
    """A change product: the change map (one value per from -> to pair) with its legend, the
    transition tables and figure; its inputs are the two maps compared."""
    item = _item(
        rec.id,
        rec.pixel_grid,
        None,
        None,
        rec.created,
        {
            "title": f"{rec.tile} land cover change",
            "landcoverpy:kind": "change",
            "landcoverpy:tile": rec.tile,
            "landcoverpy:inputs": list(rec.sources),
            "landcoverpy:from": rec.sources[0] if rec.sources else None,
            "landcoverpy:to": rec.sources[-1] if rec.sources else None,
        },
    )
    for name, loc in rec.outputs.items():
        names = rec.classes.get(name, {}) if isinstance(rec.classes, dict) else {}
        item.add_asset(
            name,
            pystac.Asset(
                href(loc, item.id),
                title="change (from -> to)",
                media_type=COG_MEDIA_TYPE,
                roles=["data"],
                extra_fields={
                    "raster:bands": [raster_band("uint16", 0, rec.pixel_grid.resolution)],
                    "classification:classes": class_list(names),
                }
                | file_fields(loc),
            ),
        )
        if loc.style:
            item.add_asset(
                f"{name}_qgis_style",
                pystac.Asset(
                    href(loc, item.id, loc.style), title="QGIS style", media_type="application/xml", roles=["style"]
                ),
            )
    for name, obj in sorted(rec.attachments.items()):
        item.add_asset(
            name.replace(".", "_"),
            pystac.Asset(
                href(obj, item.id),
                title=name,
                media_type=media_type(obj.key),
                roles=["overview"] if name.endswith(".png") else ["metadata"],
                extra_fields=file_fields(obj),
            ),
        )
    return item


def abundance_item(rec: MapRecord, href: Hrefs) -> Any:

    if not rec.grid:
        return None
    grid = rec.pixel_grid
    item = _item(
        rec.id,
        grid,
        None,
        None,
        rec.created,
        {
            "title": f"abundance {rec.level}",
            "landcoverpy:kind": "abundance",
            "landcoverpy:level": rec.level,
            "landcoverpy:inputs": [rec.model, rec.dataset],
            "landcoverpy:classes": rec.classes,
        },
    )
    classes = list(rec.classes or [])
    extra = rec.model_extra or {}
    if rec.kind == "abundance-series":  # gap-filled series: one COG per step, bands + QA band
        item.properties["title"] = f"gap-filled series ({extra.get('gap_filling')})"
        for name, loc in sorted(rec.outputs.items()):
            bands = [raster_band("float32", float("nan"), grid.resolution) for _ in (extra.get("bands") or [])]
            bands.append(raster_band("float32", float("nan"), grid.resolution, unit="0 observed, 1 imputed"))
            item.add_asset(
                name.removesuffix(".tif"),
                pystac.Asset(
                    href(loc, item.id),
                    title=name,
                    media_type=COG_MEDIA_TYPE,
                    roles=["data"],
                    extra_fields={"raster:bands": bands} | file_fields(loc),
                ),
            )
        return item
    for name, loc in rec.outputs.items():
        if name == "abundance":
            bands = [raster_band("float32", float("nan"), grid.resolution, unit="fraction") for _ in classes]
            fields: dict[str, Any] = {"raster:bands": bands}
        else:
            fields = {
                "raster:bands": [raster_band("uint8", 0, grid.resolution)],
                "classification:classes": class_list({str(i + 1): c for i, c in enumerate(classes)}),
            }
        item.add_asset(
            name,
            pystac.Asset(
                href(loc, item.id),
                title=name,
                media_type=COG_MEDIA_TYPE,
                roles=["data"],
                extra_fields=fields | file_fields(loc),
            ),
        )
        if loc.quicklook:
            item.add_asset(
                f"{name}_quicklook",
                pystac.Asset(
                    href(loc, item.id, loc.quicklook),
                    media_type="image/png",
                    roles=["overview"],
                ),
            )
    return item


def build_catalog(ctx: Context, copy_assets_to: Path | None = None) -> Any:
    """A pystac Catalog of every catalogued composite, DEM, map and abundance map."""

    href = Hrefs(ctx, copy_assets_to)
    root = pystac.Catalog(
        id="landcoverpy",
        title="landcoverpy outputs",
        description="Composites, DEM layers, land cover maps and abundance maps, with lineage.",
    )
    maps = records.find(ctx.catalog, MapRecord)
    abundance = [abundance_item(rec, href) for rec in maps if rec.kind.startswith("abundance")]
    collections: dict[str, list[Any]] = {
        "composites": [composite_item(comp, href) for comp in records.find(ctx.catalog, CompositeRecord)],
        "dem": [dem_item(dem, href) for dem in records.find(ctx.catalog, DemRecord)],
        "maps": [map_item(ctx, rec, href) for rec in maps if rec.kind == "classification"],
        "abundance": [item for item in abundance if item is not None],
        "change": [change_item(rec, href) for rec in maps if rec.kind == "change"],
    }
    descriptions = {
        "composites": "Cloud-masked seasonal median composites of Sentinel-2 (bands scaled by 1e-4) and indices.",
        "dem": "Elevation, slope and aspect from ASTER GDEM on each Sentinel-2 tile grid.",
        "maps": "Hierarchical land cover maps: category, subcategory, confidence and uncertainty.",
        "abundance": "Per-pixel class abundances (soft classification) of MODIS pixels.",
        "change": "Change between two land cover maps of a tile: change map, transition matrix and figure.",
    }
    by_id = {}
    for name, items in collections.items():
        if not items:
            continue
        extent = pystac.Extent(
            pystac.SpatialExtent([_union([i.bbox for i in items])]), pystac.TemporalExtent([_interval(items)])
        )
        coll = pystac.Collection(
            id=name,
            description=descriptions[name],
            extent=extent,
            license="proprietary",
            stac_extensions=list(EXTENSIONS),
        )
        for item in items:
            coll.add_item(item)
            by_id[item.id] = item
        root.add_child(coll)
    for item in by_id.values():  # lineage links between Items of this catalog
        for input_id in item.properties.get("landcoverpy:inputs", []) or []:
            if input_id in by_id:
                item.add_link(pystac.Link("derived_from", by_id[input_id], media_type="application/geo+json"))
    return root


def _union(bboxes: list[list[float]]) -> list[float]:
    return [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]


def _interval(items: list[Any]) -> list[dt.datetime | None]:
    stamps = []
    for it in items:
        for key in ("start_datetime", "end_datetime"):
            if it.properties.get(key):
                stamps.append(dt.datetime.fromisoformat(it.properties[key].replace("Z", "+00:00")))
        if it.datetime is not None:
            stamps.append(it.datetime)
    return [min(stamps), max(stamps)] if stamps else [None, None]


def write_catalog(ctx: Context, dest: Path, copy_assets: bool = False) -> Path:
    """Write the STAC catalog into the local folder ``dest`` (self-contained links); with
    ``copy_assets`` the objects are copied beside their Items and referenced relatively."""

    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    catalog = build_catalog(ctx, dest / "assets" if copy_assets else None)
    catalog.normalize_hrefs(str(dest))
    if copy_assets:
        catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return dest / "catalog.json"


def publish_catalog(ctx: Context) -> str:
    """Write the STAC catalog into the store under ``stac/`` of the classification-maps bucket
    (replacing the previous one file by file); returns the key of ``catalog.json``."""
    ctx.check_lease()
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    with scratch_dir(ctx.settings.TMP_DIR) as tmp:
        root = Path(tmp) / keys.STAC_ROOT
        write_catalog(ctx, root)
        files = sorted(p for p in root.rglob("*.json"))
        old = set(ctx.store.list(bucket, keys.STAC_ROOT + "/"))
        for path in files:  # items and collections first, the root catalog last
            if path.name != "catalog.json" or path.parent != root:
                ctx.store.put_bytes(bucket, f"{keys.STAC_ROOT}/{path.relative_to(root).as_posix()}", path.read_bytes())
        ctx.store.put_bytes(bucket, keys.stac_catalog_key(), (root / "catalog.json").read_bytes())
        current = {f"{keys.STAC_ROOT}/{p.relative_to(root).as_posix()}" for p in files}
    for key in sorted(old - current):  # Items of assets pruned since
        ctx.store.delete(bucket, key)
    log.info("STAC catalog: %s/%s", bucket, keys.stac_catalog_key())
    return keys.stac_catalog_key()
