"""Vector maps: a class map as polygons with a minimum mapping unit, for a GIS.

1. **Sieve** (GDAL's, through ``rasterio.features.sieve``): regions of fewer than ``mmu`` pixels
   (4-connected) take the value of their largest neighbour; nodata (0) is never filled nor
   merged into. GDAL's rule looks at whole regions, but GDAL reads the map line by line (three
   passes) and keeps only a few numbers per region; its output goes to a memory-mapped scratch
   file, so the map itself is never held in memory.
2. **Polygons, block by block**: each block's 4-connected regions of one class are labelled
   (``scipy.ndimage.label``, per class) and traced (``rasterio.features.shapes`` on the labels,
   in pixel coordinates, so coordinates shared by two blocks are the same integers); a region
   cut by a block edge is joined to the regions it touches across the edge (union-find over the
   labels of the two edge rows or columns), then their polygons are merged (``shapely``). The
   result is the same set of polygons as tracing the whole map at once; only one block, the
   edge lines and the polygons are held.
3. **Attributes** per polygon: class value and exact name, pixel count, area in hectares (pixel
   count x pixel area: the raster's class areas) and mean confidence.

Writers: GeoPackage (with a QGIS style as the layer's default, in its ``layer_styles`` table)
and FlatGeobuf, via pyogrio.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyogrio.raw import write as ogr_write
from rasterio.features import shapes, sieve
from rasterio.windows import Window
from scipy import ndimage
from scipy.cluster.hierarchy import DisjointSet

from landcoverpy import records
from landcoverpy.assets import keys, publish
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError
from landcoverpy.raster.grid import block_windows
from landcoverpy.records import MapRecord, StoredObject
from landcoverpy.scratch import scratch_dir
from landcoverpy.styles import QGIS_VERSION

log = logging.getLogger(__name__)

FOUR = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)  # 4-connectivity, as GDAL's default
VECTOR_TYPES = {".gpkg": "application/geopackage+sqlite3", ".fgb": "application/vnd.flatgeobuf"}


@dataclass
class Polygons:
    """Polygons of a class map with their attributes, in the map's CRS."""

    crs: str
    pixel_area_m2: float
    geometries: list[Any] = field(default_factory=list)
    values: list[int] = field(default_factory=list)
    pixels: list[int] = field(default_factory=list)
    confidence_sums: list[float] = field(default_factory=list)
    has_confidence: bool = False

    def __len__(self) -> int:
        return len(self.geometries)

    def area_ha(self) -> np.ndarray:
        return np.asarray(self.pixels, dtype="float64") * self.pixel_area_m2 / 1e4

    def mean_confidence(self) -> np.ndarray:
        sums = np.asarray(self.confidence_sums, dtype="float64")
        n = np.maximum(np.asarray(self.pixels, dtype="float64"), 1)
        return sums / n if self.has_confidence else np.full(len(self), np.nan)

    def class_areas_ha(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for v, a in zip(self.values, self.area_ha(), strict=True):
            out[v] = out.get(v, 0.0) + float(a)
        return out


def mmu_in_pixels(mmu_pixels: int | None, mmu_ha: float | None, pixel_area_m2: float) -> int:
    """The minimum mapping unit in pixels, from pixels or hectares (rounded up); 1: no sieve."""
    if mmu_pixels is not None and mmu_ha is not None:
        raise InputValidationError("give the minimum mapping unit in pixels or in hectares, not both")
    if mmu_ha is not None:
        if mmu_ha < 0:
            raise InputValidationError(f"minimum mapping unit {mmu_ha} ha: must be 0 or more")
        return max(1, int(np.ceil(mmu_ha * 1e4 / pixel_area_m2 - 1e-9)))
    if mmu_pixels is not None and mmu_pixels < 1:
        raise InputValidationError(f"minimum mapping unit {mmu_pixels} pixels: must be 1 or more")
    return mmu_pixels or 1


SIEVE_CACHE_BYTES = 64 * 2**20  # GDAL's block cache while sieving: the three passes read lines in order


def sieve_map(src_path: str, out_path: Path, mmu: int, block: int = 1024) -> Path:
    """``src_path``'s first band with regions under ``mmu`` pixels merged into their largest
    neighbour (GDAL's sieve, 4-connected), written as a tiled GeoTIFF at ``out_path``.

    Nothing here holds the map in memory: the map is copied block by block to a local scratch
    GeoTIFF, which GDAL's sieve reads line by line (its memory grows with the number of regions,
    not with the map's size); the sieve writes into a memory-mapped scratch file, which is copied
    block by block into ``out_path``. The scratch files lie beside ``out_path`` and are removed."""
    with rasterio.open(src_path) as src:
        profile = src.profile | {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256}
        profile |= {"compress": "deflate", "count": 1}
        for key in ("photometric", "interleave"):
            profile.pop(key, None)
        colormap = _colormap(src)
        height, width, dtype = src.height, src.width, src.dtypes[0]
        windows = list(block_windows(height, width, block))

        def write(read: Callable[[Window], np.ndarray]) -> Path:
            with rasterio.open(out_path, "w", **profile) as dst:
                for w in windows:
                    dst.write(read(w), 1, window=w)
                if colormap:
                    dst.write_colormap(1, colormap)
            return out_path

        if mmu <= 1:
            return write(lambda w: src.read(1, window=w))
        local, mask_path, raw = (
            out_path.with_name(f"{out_path.stem}.{part}") for part in ("in.tif", "mask.tif", "raw")
        )
        scratch = {k: v for k, v in profile.items() if k not in ("compress", "nodata")}
        own_mask = dtype == "uint8"  # GDAL's mask is "not 0": a byte map is its own mask
        try:
            with rasterio.Env(GDAL_CACHEMAX=SIEVE_CACHE_BYTES):
                with contextlib.ExitStack() as files:
                    copy = files.enter_context(rasterio.open(local, "w", **scratch))
                    valid = (
                        None
                        if own_mask
                        else files.enter_context(rasterio.open(mask_path, "w", **(scratch | {"dtype": "uint8"})))
                    )
                    for w in windows:
                        values = src.read(1, window=w)
                        copy.write(values, 1, window=w)
                        if valid is not None:
                            valid.write((values != 0).astype("uint8"), 1, window=w)
                out = np.memmap(raw, dtype=dtype, mode="w+", shape=(height, width))
                with rasterio.open(local) as copy, rasterio.open(local if own_mask else mask_path) as valid:
                    sieve(rasterio.band(copy, 1), mmu, out=out, mask=rasterio.band(valid, 1), connectivity=4)
                out.flush()
                write(lambda w: np.asarray(out[w.toslices()]))
        finally:
            for path in (local, mask_path, raw):
                path.unlink(missing_ok=True)
    return out_path


def _colormap(src: Any) -> dict[int, tuple[int, ...]] | None:
    try:
        return dict(src.colormap(1))
    except ValueError:  # no colour table
        return None


def _label_block(values: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of equal non-zero value, labelled 1..n (row-major by first pixel)."""
    labels = np.zeros(values.shape, dtype="int32")
    n = 0
    for v in np.unique(values):
        if v == 0:
            continue
        lab, k = ndimage.label(values == v, structure=FOUR)
        labels[lab > 0] = lab[lab > 0] + n
        n += k
    return labels, n


def _edge_links(
    regions: DisjointSet, ids_a: np.ndarray, values_a: np.ndarray, ids_b: np.ndarray, values_b: np.ndarray
) -> None:
    """Join the regions of two facing edge lines (pixel i of one touches pixel i of the other)."""
    same = (values_a == values_b) & (values_a != 0)
    for a, b in set(zip(ids_a[same].tolist(), ids_b[same].tolist(), strict=True)):
        regions.merge(a, b)


def vectorize(
    read: Callable[[Window], np.ndarray],
    height: int,
    width: int,
    transform: Affine,
    crs: str,
    block: int = 1024,
    read_confidence: Callable[[Window], np.ndarray] | None = None,
) -> Polygons:
    """Polygons of the class map that ``read`` returns window by window (0 = nodata), traced
    ``block`` x ``block`` pixels at a time and merged across block edges."""
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    regions = DisjointSet()  # the block regions, joined across block edges
    parts: dict[int, Any] = {}
    value_of: dict[int, int] = {}
    count_of: dict[int, int] = {}
    conf_of: dict[int, float] = {}
    right_edges: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # (row_off, col_off) -> ids, values
    bottom_edges: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    offset = 0
    for w in block_windows(height, width, block):
        r0, c0 = int(w.row_off), int(w.col_off)
        values = read(w)
        labels, n = _label_block(values)
        ids = np.where(labels > 0, labels + offset, 0).astype("int64")
        if n:
            flat = labels.ravel()
            counts = np.bincount(flat, minlength=n + 1)
            first_value = np.zeros(n + 1, dtype="int64")
            first_value[flat] = values.ravel()
            confs = (
                np.bincount(flat, weights=read_confidence(w).ravel().astype("float64"), minlength=n + 1)
                if read_confidence is not None
                else np.zeros(n + 1)
            )
            pixel_space = Affine.translation(c0, r0)  # integer coordinates: blocks share edges exactly
            for geom, label in shapes(labels, mask=labels > 0, connectivity=4, transform=pixel_space):
                gid = int(label) + offset
                regions.add(gid)
                parts[gid] = shapely.geometry.shape(geom)
                value_of[gid] = int(first_value[int(label)])
                count_of[gid] = int(counts[int(label)])
                conf_of[gid] = float(confs[int(label)])
        left = right_edges.pop((r0, c0 - block), None) if c0 else None
        if left is not None:
            _edge_links(regions, left[0], left[1], ids[:, 0], values[:, 0])
        above = bottom_edges.pop((r0 - block, c0), None) if r0 else None
        if above is not None:
            _edge_links(regions, above[0], above[1], ids[0, :], values[0, :])
        right_edges[(r0, c0)] = (ids[:, -1].copy(), values[:, -1].copy())
        bottom_edges[(r0, c0)] = (ids[-1, :].copy(), values[-1, :].copy())
        offset += n
    out = Polygons(crs, pixel_area, has_confidence=read_confidence is not None)
    for group in regions.subsets():
        members = sorted(group)
        geom = parts[members[0]] if len(members) == 1 else shapely.union_all([parts[m] for m in members])
        out.geometries.append(shapely.transform(geom, lambda xy: _apply(transform, xy)))
        out.values.append(value_of[members[0]])
        out.pixels.append(sum(count_of[m] for m in members))
        out.confidence_sums.append(sum(conf_of[m] for m in members))
    return out


def _apply(transform: Affine, xy: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = transform[:6]
    x, y = xy[:, 0], xy[:, 1]
    return np.column_stack([a * x + b * y + c, d * x + e * y + f])


def vectorize_file(class_path: str, confidence_path: str | None = None, block: int = 1024) -> Polygons:
    """:func:`vectorize` over a raster (and its confidence raster on the same grid)."""
    with rasterio.open(class_path) as src:
        conf = rasterio.open(confidence_path) if confidence_path else None
        try:
            return vectorize(
                lambda w: src.read(1, window=w),
                src.height,
                src.width,
                src.transform,
                src.crs.to_string() if src.crs else "",
                block,
                (lambda w: conf.read(1, window=w)) if conf is not None else None,
            )
        finally:
            if conf is not None:
                conf.close()


def write_vectors(
    polygons: Polygons,
    names: dict[int, str],
    colours: dict[int, tuple[int, int, int]],
    path_stem: Path,
    layer: str,
) -> dict[str, Path]:
    """The polygons as ``{path_stem}.gpkg`` (layer ``layer``, with its QGIS style as the default)
    and ``{path_stem}.fgb``; returns suffix -> path."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(polygons)), key=lambda i: (-polygons.pixels[i], polygons.values[i]))
    geoms = [polygons.geometries[i] for i in order]
    multi = any(g.geom_type == "MultiPolygon" for g in geoms)
    if multi:
        geoms = [shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in geoms]
    areas, conf = polygons.area_ha(), polygons.mean_confidence()
    columns = [
        np.array([polygons.values[i] for i in order], dtype="int32"),
        np.array([names.get(polygons.values[i], str(polygons.values[i])) for i in order], dtype=object),
        np.array([areas[i] for i in order], dtype="float64"),
        np.array([polygons.pixels[i] for i in order], dtype="int64"),
        np.array([conf[i] for i in order], dtype="float64"),
    ]
    fields = ["value", "class", "area_ha", "pixels", "confidence"]
    wkb = shapely.to_wkb(np.array(geoms, dtype=object)) if geoms else np.array([], dtype=object)
    written = {}
    for suffix, driver in ((".gpkg", "GPKG"), (".fgb", "FlatGeobuf")):
        path = path_stem.with_suffix(suffix)
        path.unlink(missing_ok=True)
        ogr_write(
            str(path),
            wkb,
            columns,
            fields,
            layer=layer,
            driver=driver,
            crs=polygons.crs,
            geometry_type="MultiPolygon" if multi else "Polygon",
            promote_to_multi=False,
        )
        written[suffix] = path
    used = sorted(set(polygons.values))
    add_layer_style(written[".gpkg"], layer, categorized_qml({v: (names.get(v, str(v)), colours.get(v)) for v in used}))
    return written


def categorized_qml(classes: dict[int, tuple[str, tuple[int, int, int] | None]]) -> str:
    """A QGIS vector style: one fill colour per class name (field ``class``), no outlines."""
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="Symbology")
    renderer = ET.SubElement(
        root, "renderer-v2", type="categorizedSymbol", attr="class", symbollevels="0", forceraster="0"
    )
    renderer.set("enableorderby", "0")
    cats = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, (value, (name, rgb)) in enumerate(sorted(classes.items())):
        ET.SubElement(cats, "category", value=name, label=name, symbol=str(i), render="true")
        colour = ",".join(str(c) for c in (rgb or _fallback(value))[:3]) + ",255"
        symbol = ET.SubElement(symbols, "symbol", type="fill", name=str(i), alpha="1", clip_to_extent="1")
        symbol.set("force_rhr", "0")
        layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "enabled": "1", "pass": "0", "locked": "0"})
        options = ET.SubElement(layer, "Option", type="Map")
        for key, val in (
            ("color", colour),
            ("style", "solid"),
            ("outline_style", "no"),
            ("outline_color", colour),
            ("outline_width", "0"),
        ):
            ET.SubElement(options, "Option", name=key, type="QString", value=val)
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def _fallback(value: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(value)
    r, g, b = (int(x) for x in rng.integers(40, 220, 3))
    return r, g, b


def add_layer_style(gpkg: Path, layer: str, qml: str) -> None:
    """Store ``qml`` as ``layer``'s default style in the GeoPackage's ``layer_styles`` table (the
    table QGIS reads and writes styles in; registered as an extension table)."""
    con = sqlite3.connect(gpkg)
    try:
        con.execute(
            """CREATE TABLE IF NOT EXISTS layer_styles (
                id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256), f_table_schema TEXT(256),
                f_table_name TEXT(256), f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT,
                styleSLD TEXT, useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),
                update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"""
        )
        geom_column = con.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,)
        ).fetchone()
        con.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, last_change) "
            "VALUES ('layer_styles', 'attributes', 'layer_styles', ?)",
            (dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),),
        )
        con.execute("DELETE FROM layer_styles WHERE f_table_name = ?", (layer,))
        con.execute(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, "
            "styleQML, styleSLD, useAsDefault, description, owner, ui) VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', '')",
            (layer, geom_column[0] if geom_column else "geom", layer, qml, "landcoverpy classes"),
        )
        con.commit()
    finally:
        con.close()


# The class layers of a map and the confidence layer of each
LAYERS = {"classification": "confidence", "sl_classification": "sl_confidence"}
LEVEL_LAYERS: dict[str, tuple[str, ...]] = {"category": ("classification",), "subcategory": ("sl_classification",)}
LEVEL_LAYERS["both"] = LEVEL_LAYERS["category"] + LEVEL_LAYERS["subcategory"]


def export_name(name: str, tile: str) -> str:
    """The file a vector object (``classification_mmu4.gpkg``) is exported as: ``classification_mmu4_{tile}.gpkg``."""
    stem, _, suffix = name.rpartition(".")
    return f"{stem}_{tile}.{suffix}"


def vector_name(layer: str, mmu: int) -> str:
    """The name of a map layer's polygons at a minimum mapping unit (their keys' base name)."""
    return f"{layer}_mmu{mmu}"


def vectorize_record(
    ctx: Context,
    record: MapRecord,
    layers: tuple[str, ...],
    mmu_pixels: int | None = None,
    mmu_ha: float | None = None,
    block: int = 1024,
) -> tuple[MapRecord, dict[str, StoredObject]]:
    """Polygons of ``record``'s class ``layers`` (sieved to the minimum mapping unit), stored
    beside the map's COGs as GeoPackage and FlatGeobuf and recorded in the map's record; polygons
    already made at this unit are reused. Returns the record as stored and object name -> the
    polygons' stored objects."""
    grid = record.pixel_grid
    mmu = mmu_in_pixels(mmu_pixels, mmu_ha, abs(grid.affine.a * grid.affine.e))
    made: dict[str, StoredObject] = {}
    bucket = ctx.settings.MINIO_BUCKET_CLASSIFICATIONS
    for layer in layers:
        if layer not in record.outputs:
            raise InputValidationError(f"map {record.id} has no {layer} layer")
        name = vector_name(layer, mmu)
        wanted = [f"{name}{suffix}" for suffix in VECTOR_TYPES]
        if all(
            w in record.vectors
            and ctx.store.stat(record.vectors[w].bucket, record.vectors[w].key) == record.vectors[w].size
            for w in wanted
        ):
            made |= {w: record.vectors[w] for w in wanted}
            continue
        loc = record.outputs[layer]
        conf = record.outputs.get(LAYERS[layer])
        names = {v: n for n, v in record.class_values(layer).items()}
        with scratch_dir(ctx.settings.TMP_DIR) as tmp, ctx.store.rasterio_env():
            sieved = Path(tmp) / "sieved.tif"
            conf_uri = ctx.store.raster_uri(conf.bucket, conf.key) if conf else None

            def trace(
                src_uri: str = ctx.store.raster_uri(loc.bucket, loc.key),
                conf_uri: str | None = conf_uri,
                sieved: Path = sieved,
            ) -> Polygons:
                return vectorize_file(str(sieve_map(src_uri, sieved, mmu)), conf_uri, block)

            polygons = ctx.store.reading(trace, f"vectorising {loc.bucket}/{loc.key}")
            with rasterio.open(sieved) as src:
                colours = {v: tuple(rgba[:3]) for v, rgba in (_colormap(src) or {}).items()}
            files = write_vectors(polygons, names, colours, Path(tmp) / name, layer)  # type: ignore[arg-type]
            for suffix, path in files.items():
                key = keys.map_key(record.tile, record.id, name, suffix)
                made[f"{name}{suffix}"] = StoredObject(**publish.put_file(ctx.store, bucket, key, path))
        log.info("%s %s: %d polygons (minimum mapping unit %d pixels)", record.id, layer, len(polygons), mmu)
    if any(record.vectors.get(k) != v for k, v in made.items()):
        record = record.model_copy(update={"vectors": record.vectors | made})
        records.store(ctx.catalog, record)
    return record, made
