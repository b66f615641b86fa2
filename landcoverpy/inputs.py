"""Parse and validate the user's input files into typed objects.

Every error names the file and the row or key at fault. Nothing is written here: stages only start
after validation passed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import shapely
from pyogrio.raw import read as ogr_read
from pyproj import Transformer

from landcoverpy.errors import InputValidationError
from landcoverpy.polygons import check_overlaps, check_polygons, is_polygon_file, polygon_pixels, read_polygons
from landcoverpy.sentinel2 import tile_of

log = logging.getLogger(__name__)

NODATA_VALUE = 0
NOT_CLASSIFIED_VALUE = 1
MAX_ERRORS_SHOWN = 10


@dataclass(frozen=True)
class Season:
    name: str
    start: dt.date
    end: dt.date

    def contains(self, when: dt.date | dt.datetime) -> bool:
        day = when.date() if isinstance(when, dt.datetime) else when
        return self.start <= day <= self.end


@dataclass(frozen=True)
class LabelSet:
    """Class name -> map value, with the reserved values it must avoid."""

    source: str
    values: dict[str, int]
    min_value: int

    def value(self, name: str) -> int:
        return self.values[name]

    def name_of(self, value: int) -> str:
        for name, v in self.values.items():
            if v == value:
                return name
        raise KeyError(value)

    @property
    def names(self) -> list[str]:
        return sorted(self.values, key=self.values.__getitem__)


@dataclass(frozen=True)
class LabelledPoints:
    """Validated points: columns latitude, longitude, category, subcategory (may be empty)."""

    source: str
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)


def normalise_name(name: str) -> str:
    """The form a class or season name is compared and stored in: Unicode NFC, surrounding
    whitespace removed, inner whitespace runs as one space. Case is kept (``Forest`` and
    ``forest`` are two names); so are ``/`` and every other character."""
    return " ".join(unicodedata.normalize("NFC", str(name)).split())


def _fail(source: str | Path, problems: list[str]) -> InputValidationError:
    shown = problems[:MAX_ERRORS_SHOWN]
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    return InputValidationError(f"{source}: " + "; ".join(shown) + more)


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of an input file; a clear error for a missing, empty or non-text file."""
    path = Path(path)
    if not path.is_file():
        raise InputValidationError(f"{path}: file not found")
    data = path.read_bytes()
    if not data.strip():
        raise InputValidationError(f"{path}: the file is empty; expected {what}")
    if b"\x00" in data[:8192]:
        raise InputValidationError(f"{path}: this is a binary file, not {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputValidationError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}); save it as UTF-8 {what}"
        ) from None


def _read_json(path: str | Path, what: str = "JSON") -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputValidationError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def load_labels(path: str | Path, level: str) -> LabelSet:
    """``level`` is ``"category"`` (values >= 1; 0 is nodata) or ``"subcategory"`` (values >= 2;
    0 nodata, 1 not classified)."""
    min_value = 1 if level == "category" else 2
    data = _read_json(path, "a JSON object mapping class name -> integer")
    if not isinstance(data, dict) or not data:
        raise InputValidationError(f"{path}: expected a non-empty JSON object mapping class name -> integer")
    problems = []
    seen: dict[int, str] = {}
    names: dict[str, str] = {}
    values: dict[str, int] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not name.strip():
            problems.append(f"class name {name!r} must be a non-empty string")
        norm = normalise_name(name)
        if norm in names:
            problems.append(
                f"keys {names[norm]!r} and {name!r} are the same name once Unicode (NFC) and "
                "whitespace are normalised; rename one"
            )
        names[norm] = name
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"key {name!r}: value {value!r} is not an integer")
            continue
        if value < min_value:
            reserved = "0 is nodata" if level == "category" else "0 is nodata and 1 is not-classified"
            problems.append(f"key {name!r}: value {value} is reserved ({reserved}); use integers >= {min_value}")
        elif value > 255:
            problems.append(f"key {name!r}: value {value} does not fit the uint8 maps; use 1..255")
        if value in seen:
            problems.append(f"keys {seen[value]!r} and {name!r} share value {value}")
        seen[value] = name
        values[norm] = value
    if problems:
        raise _fail(path, problems)
    return LabelSet(source=str(path), values=values, min_value=min_value)


def _parse_date(path: str | Path, key: str, field: str, value: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputValidationError(f"{path}: season {key!r} {field} {value!r} is not a YYYY-MM-DD date") from None


def load_seasons(path: str | Path) -> list[Season]:
    """Both forms users have: ``{"spring": {"start": ..., "end": ...}}`` and
    ``{"spring": ["start", "end"]}``. Seasons must not be empty or overlap."""
    what = "a JSON object mapping season name -> dates"
    _check_duplicate_keys(path, read_text(path, what))
    data = _read_json(path, what)
    if not isinstance(data, dict) or not data:
        raise InputValidationError(f"{path}: expected a non-empty JSON object mapping season name -> dates")
    seasons = []
    normalised: dict[str, str] = {}
    for raw_name, spec in data.items():
        name = normalise_name(raw_name)
        if not name:
            raise InputValidationError(f"{path}: a season has an empty name ({raw_name!r}); give every season a name")
        if name in normalised:
            raise InputValidationError(
                f"{path}: seasons {normalised[name]!r} and {raw_name!r} are the same name once "
                "Unicode (NFC) and whitespace are normalised; rename one"
            )
        normalised[name] = raw_name
        if name == "dem":
            raise InputValidationError(f"{path}: season name 'dem' is reserved for the terrain features; rename it")
        if isinstance(spec, dict):
            missing = {"start", "end"} - set(spec)
            if missing:
                raise InputValidationError(f"{path}: season {name!r} lacks {', '.join(sorted(missing))}")
            start, end = spec["start"], spec["end"]
        elif isinstance(spec, list) and len(spec) == 2:
            start, end = spec
        else:
            raise InputValidationError(
                f'{path}: season {name!r} must be {{"start": ..., "end": ...}} or [start, end], got {spec!r}'
            )
        s, e = _parse_date(path, name, "start", start), _parse_date(path, name, "end", end)
        if s > e:
            raise InputValidationError(f"{path}: season {name!r} starts ({s}) after it ends ({e})")
        seasons.append(Season(name=name, start=s, end=e))
    ordered = sorted(seasons, key=lambda x: x.start)
    for a, b in zip(ordered, ordered[1:]):
        if b.start <= a.end:
            raise InputValidationError(
                f"{path}: seasons {a.name!r} ({a.start}..{a.end}) and {b.name!r} ({b.start}..{b.end}) overlap"
            )
    return seasons


def _check_duplicate_keys(path: str | Path, text: str) -> None:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise InputValidationError(f"{path}: duplicated season name(s) {', '.join(map(repr, dupes))}")
        return dict(pairs)

    try:
        json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError:
        return  # reported with position by _read_json


def _read_point_table(path: Path, lc_property: str, sl_property: str) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in {".geojson", ".json", ".kmz", ".kml", ".gpkg"}:
        return _read_vector_points(path, lc_property, sl_property)
    text = read_text(path, "a CSV table with latitude, longitude and category columns")
    sample = text[: 64 * 1024]
    try:
        sep = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        sep = ";" if sample.count(";") > sample.count(",") else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()  # trailing blank lines
    header = [c.strip() for c in rows[0]]
    problems = []
    body = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            problems.append(
                f"row {number} has {len(row)} fields, the header has {len(header)} "
                f"(an unquoted {sep!r} inside a value?)"
            )
            continue
        body.append((number, row + [""] * (len(header) - len(row))))
    if problems:
        raise _fail(path, problems)
    frame = pd.DataFrame([r for _, r in body], columns=header, dtype=str)
    frame.index = pd.Index([n - 2 for n, _ in body])  # row number - 2, as in a file without blank lines
    return frame


def _read_vector_points(path: Path, lc_property: str, sl_property: str) -> pd.DataFrame:
    """GeoJSON (parsed directly) or KML / KMZ / GeoPackage points (through GDAL's OGR with
    pyogrio), with the label properties as attributes (KML ExtendedData)."""
    if path.suffix.lower() in {".geojson", ".json"}:
        data = _read_json(path)
        rows = []
        features = data.get("features") if isinstance(data, dict) else None
        if not isinstance(features, list):
            raise InputValidationError(f"{path}: expected a GeoJSON FeatureCollection with a 'features' list")
        for i, feat in enumerate(features):
            geom = feat.get("geometry") if isinstance(feat, dict) else None
            if not isinstance(geom, dict):
                raise InputValidationError(f"{path}: feature {i} has no geometry; give each feature a Point geometry")
            if geom.get("type") != "Point":
                raise InputValidationError(f"{path}: feature {i} is a {geom.get('type')!r}, expected Point")
            coords = geom.get("coordinates")
            if not isinstance(coords, list) or len(coords) < 2:
                raise InputValidationError(f"{path}: feature {i} has no coordinates [longitude, latitude]")
            lon, lat = coords[:2]
            props = feat.get("properties") or {}
            rows.append(
                {
                    "latitude": str(lat),
                    "longitude": str(lon),
                    lc_property: str(props.get(lc_property, "") or ""),
                    sl_property: str(props.get(sl_property, "") or ""),
                }
            )
        return pd.DataFrame(rows, columns=["latitude", "longitude", lc_property, sl_property], dtype=str)
    target = str(path)
    if path.suffix.lower() == ".kmz":
        with zipfile.ZipFile(path) as zf:
            kml = next((n for n in zf.namelist() if n.lower().endswith(".kml")), None)
        if kml is None:
            raise InputValidationError(f"{path}: the KMZ holds no .kml document")
        target = f"/vsizip/{path}/{kml}"
    try:
        meta, _fids, geometry, fields = ogr_read(target)
    except Exception as exc:  # pyogrio raises its own DataSourceError family
        raise InputValidationError(f"{path}: cannot read points ({exc})") from None
    geoms = shapely.from_wkb(geometry)
    if len(geoms) and not all(g is not None and g.geom_type == "Point" for g in geoms):
        kinds = sorted({g.geom_type if g is not None else "empty" for g in geoms})
        raise InputValidationError(f"{path}: expected Point features, found {', '.join(kinds)}")
    x, y = shapely.get_x(geoms), shapely.get_y(geoms)
    crs = meta.get("crs")
    if crs and crs not in ("EPSG:4326", "OGC:CRS84"):
        x, y = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    columns = dict(zip(meta["fields"], fields))
    empty = [""] * len(geoms)
    return pd.DataFrame(
        {
            "latitude": [str(v) for v in y],
            "longitude": [str(v) for v in x],
            lc_property: ["" if v is None else str(v) for v in columns.get(lc_property, empty)],
            sl_property: ["" if v is None else str(v) for v in columns.get(sl_property, empty)],
        }
    )


def load_points(
    path: str | Path,
    lc_labels: LabelSet,
    sl_labels: LabelSet | None = None,
    lc_property: str = "category",
    sl_property: str = "subcategory",
    max_pixels_per_polygon: int | None = None,
) -> LabelledPoints:
    """Read dataset.csv (``,`` or ``;``), GeoJSON or KMZ points and check every row; or labelled
    polygons (GeoPackage, GeoJSON, Shapefile, FlatGeobuf), each as the pixels inside it
    (:mod:`landcoverpy.polygons`)."""
    path = Path(path)
    if not path.is_file():
        raise InputValidationError(f"{path}: file not found")
    if is_polygon_file(path):
        return load_polygons(path, lc_labels, sl_labels, lc_property, sl_property, max_pixels_per_polygon)
    raw = _read_point_table(path, lc_property, sl_property)
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in ("latitude", "longitude", lc_property) if c not in raw.columns]
    if missing:
        raise InputValidationError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(raw.columns) or 'none'}"
        )
    if raw.empty:
        raise InputValidationError(f"{path}: no data rows")
    if sl_property not in raw.columns:
        raw[sl_property] = ""
    problems: list[str] = []
    tiles: dict[int, str] = {}
    lat = pd.to_numeric(raw["latitude"].str.strip(), errors="coerce")
    lon = pd.to_numeric(raw["longitude"].str.strip(), errors="coerce")
    for idx in raw.index:
        row = idx + 2  # header is line 1
        lat_ok = not pd.isna(lat[idx]) and -90 <= lat[idx] <= 90
        lon_ok = not pd.isna(lon[idx]) and -180 <= lon[idx] <= 180
        if not lat_ok:
            problems.append(f"row {row}: latitude {raw.at[idx, 'latitude']!r} is not a number in [-90, 90]")
        if not lon_ok:
            problems.append(f"row {row}: longitude {raw.at[idx, 'longitude']!r} is not a number in [-180, 180]")
        if lat_ok and lon_ok:
            tiles[idx] = _tile_or_problem(lat[idx], lon[idx], row, problems)
        cat = normalise_name(raw.at[idx, lc_property])
        if not cat:
            problems.append(f"row {row}: empty {lc_property}")
        elif cat not in lc_labels.values:
            problems.append(f"row {row}: {lc_property} {cat!r} is not in {lc_labels.source}")
        sub = normalise_name(raw.at[idx, sl_property])
        if sub and sl_labels is not None and sub not in sl_labels.values:
            problems.append(f"row {row}: {sl_property} {sub!r} is not in {sl_labels.source}")
    if problems:
        raise _fail(path, problems)
    frame = pd.DataFrame(
        {
            "latitude": lat.astype("float64"),
            "longitude": lon.astype("float64"),
            "category": raw[lc_property].map(normalise_name),
            "subcategory": raw[sl_property].map(normalise_name),
            "tile": pd.Series(tiles, index=raw.index, dtype=str),
        }
    )
    frame = _drop_duplicates(path, frame)
    return LabelledPoints(source=str(path), frame=frame.reset_index(drop=True))


def load_polygons(
    path: Path,
    lc_labels: LabelSet,
    sl_labels: LabelSet | None,
    lc_property: str,
    sl_property: str,
    max_pixels: int | None,
) -> LabelledPoints:
    """Labelled polygons, every feature checked (geometry, tile, labels, overlaps), as the rows of
    their pixels (with ``polygon_id`` and the centroid's ``block_latitude``/``block_longitude``)."""
    geoms, labels = read_polygons(path, lc_property, sl_property)
    if not geoms:
        raise InputValidationError(f"{path}: no polygons")
    labels["category"] = labels["category"].map(normalise_name)
    labels["subcategory"] = labels["subcategory"].map(normalise_name)
    problems: list[str] = []
    for i in labels.index:
        cat, sub = labels.at[i, "category"], labels.at[i, "subcategory"]
        if not cat:
            problems.append(f"feature {i + 1}: empty {lc_property}")
        elif cat not in lc_labels.values:
            problems.append(f"feature {i + 1}: {lc_property} {cat!r} is not in {lc_labels.source}")
        if sub and sl_labels is not None and sub not in sl_labels.values:
            problems.append(f"feature {i + 1}: {sl_property} {sub!r} is not in {sl_labels.source}")
    tiles = check_polygons(geoms, problems)
    if not problems:
        check_overlaps(geoms, labels, tiles, problems)
    frame = polygon_pixels(geoms, labels, tiles, max_pixels, problems) if not problems else None
    if problems or frame is None:
        raise _fail(path, problems)
    log.info("%s: %d polygons, %d pixels", path, len(geoms), len(frame))
    return LabelledPoints(source=str(path), frame=frame)


def _drop_duplicates(path: str | Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Points at the same coordinates (to 1e-7 degree, about 1 cm): identical labels are dropped
    with a warning naming the rows; different labels are refused naming the rows."""
    key = pd.Series(list(zip(frame["latitude"].round(7), frame["longitude"].round(7))), index=frame.index)
    groups = frame.groupby(key, sort=False).groups
    conflicts, dropped = [], []
    for rows in groups.values():
        if len(rows) < 2:
            continue
        labels = frame.loc[rows, ["category", "subcategory"]].drop_duplicates()
        numbers = [int(r) + 2 for r in rows]
        if len(labels) > 1:
            pairs = ", ".join(
                f"row {n} {frame.at[r, 'category']!r}/{frame.at[r, 'subcategory']!r}" for n, r in zip(numbers, rows)
            )
            conflicts.append(f"rows {', '.join(map(str, numbers))} are the same point with different labels ({pairs})")
        else:
            dropped.append((numbers[0], numbers[1:]))
    if conflicts:
        raise _fail(path, conflicts + [f"{len(conflicts)} point(s) with conflicting labels: keep one label per point"])
    if dropped:
        extra = [n for _, later in dropped for n in later]
        log.warning(
            "%s: %d duplicated point(s) (same coordinates and labels) dropped: rows %s (duplicates of rows %s)",
            path,
            len(extra),
            ", ".join(map(str, extra[:20])) + (" ..." if len(extra) > 20 else ""),
            ", ".join(str(first) for first, _ in dropped[:20]),
        )
        frame = frame.drop(index=[r - 2 for r in extra])
    return frame


def _tile_or_problem(lat: float, lon: float, row: int, problems: list[str]) -> str:
    """The Sentinel-2 tile of a point, or a problem naming the row (polar points)."""

    try:
        return tile_of(float(lat), float(lon))
    except InputValidationError as exc:
        problems.append(f"row {row}: {exc}")
        return ""


@dataclass(frozen=True)
class Inputs:
    points: LabelledPoints
    seasons: list[Season]
    lc_labels: LabelSet
    sl_labels: LabelSet


def split_monthly(seasons: list[Season]) -> list[Season]:
    """Each season cut at calendar months: ``summer`` from 2021-06-15 to 2021-08-31 becomes
    ``summer-2021-06`` (15 to 30 June), ``summer-2021-07``, ``summer-2021-08``: one composite,
    hence one set of features, per month."""
    out = []
    for season in seasons:
        start = season.start
        while start <= season.end:
            next_month = dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)
            end = min(season.end, next_month - dt.timedelta(days=1))
            out.append(Season(f"{season.name}-{start:%Y-%m}", start, end))
            start = next_month
    return out


def load_inputs(
    dataset: str | Path,
    seasons: str | Path,
    lc_labels: str | Path,
    sl_labels: str | Path,
    lc_property: str = "category",
    sl_property: str = "subcategory",
    monthly: bool = False,
    max_pixels_per_polygon: int | None = None,
) -> Inputs:
    """Every input, validated. With ``monthly``, seasons are cut into calendar months
    (``SEASON_SPLIT=monthly``); labelled polygons give at most ``max_pixels_per_polygon`` pixels
    each (``MAX_PIXELS_PER_POLYGON``)."""
    lc = load_labels(lc_labels, "category")
    sl = load_labels(sl_labels, "subcategory")
    season_list = load_seasons(seasons)
    return Inputs(
        points=load_points(dataset, lc, sl, lc_property, sl_property, max_pixels_per_polygon),
        seasons=split_monthly(season_list) if monthly else season_list,
        lc_labels=lc,
        sl_labels=sl,
    )
