"""MODIS acquisition: MOD09A1 (8-day, 500 m) granules by tile (h, v) and date range into the
modis bucket, each read once (QA applied) into a 7-band GeoTIFF and catalogued; and the time-series
manifest the abundance stage reads.

Sources: a local folder of HDF granules, or NASA LP DAAC over HTTPS (``MODIS_SOURCE`` base URL
such as ``https://e4ftl01.cr.usgs.gov/MOLT/MOD09A1.061``, Earthdata bearer token), whose date
folders ``YYYY.MM.DD/`` list ``MOD09A1.AYYYYDDD.hHHvVV.061.*.hdf`` files.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

from landcoverpy import records
from landcoverpy.context import Context
from landcoverpy.errors import InputValidationError, ProviderError, TransientError
from landcoverpy.faults import call_source, is_transient_status
from landcoverpy.progress import step
from landcoverpy.scratch import scratch_dir
from landcoverpy.sources.hrefs import AssetReader
from landcoverpy.sources.modis import ModisQA, read_mod09, write_geotiff
from landcoverpy.sources.stac import StacCatalog
from landcoverpy.storage import join_key, local_copy

log = logging.getLogger(__name__)

_TILE = re.compile(r"^h(\d{2})v(\d{2})$")
_GRANULE = re.compile(r"(MOD09A1|MYD09A1|MOD09GA)\.A(\d{4})(\d{3})\.(h\d{2}v\d{2})\.(\d{3})\.\d+\.hdf$")


def check_modis_tile(tile: str) -> str:
    m = _TILE.match(tile.strip().lower())
    if not m or int(m.group(1)) > 35 or int(m.group(2)) > 17:
        raise InputValidationError(f"MODIS tile {tile!r} is not hHHvVV with h 00-35 and v 00-17")
    return tile.strip().lower()


@dataclass(frozen=True)
class Granule:
    name: str
    tile: str
    date: dt.date
    href: str


def parse_granule(name: str, href: str) -> Granule | None:
    m = _GRANULE.search(name)
    if not m:
        return None
    date = dt.date(int(m.group(2)), 1, 1) + dt.timedelta(days=int(m.group(3)) - 1)
    return Granule(name=m.group(0), tile=m.group(4), date=date, href=href)


class ModisSource:
    settings_hint = "MODIS_SOURCE"

    def __init__(self, source: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.source, self.token, self.timeout = source.rstrip("/"), token, timeout

    def describe(self) -> str:
        return f"MODIS source {self.source}"

    @property
    def remote(self) -> bool:
        return self.source.startswith(("http://", "https://"))

    def _get(self, url: str, stream: bool = False) -> Any:

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        resp = requests.get(url, headers=headers, stream=stream, timeout=self.timeout)
        if is_transient_status(resp.status_code):
            resp.close()
            raise TransientError(f"{url}: HTTP {resp.status_code}")
        if resp.status_code in (401, 403):
            resp.close()
            raise ProviderError(f"{url}: access refused (HTTP {resp.status_code}); check EARTHDATA_TOKEN")
        return resp

    def search(self, tile: str, start: dt.date, end: dt.date) -> list[Granule]:
        tile = check_modis_tile(tile)
        if not self.remote:
            folder = Path(self.source)
            if not folder.is_dir():
                raise ProviderError(f"MODIS source folder {folder} does not exist; set MODIS_SOURCE")
            found = [parse_granule(p.name, str(p)) for p in sorted(folder.rglob("*.hdf"))]
        else:
            found = []
            day = start
            while day <= end:
                url = f"{self.source}/{day:%Y.%m.%d}/"
                resp = self._get(url)  # a failure is retried with the whole search (fetch_modis)
                if resp.status_code == 200:
                    for name in sorted(set(re.findall(r'href="([^"]+\.hdf)"', resp.text))):
                        found.append(parse_granule(name, url + name.rsplit("/", 1)[-1]))
                day += dt.timedelta(days=1)
        return [g for g in found if g is not None and g.tile == tile and start <= g.date <= end]

    def open(self, granule: Granule) -> Any:
        if not self.remote:
            return open(granule.href, "rb")
        resp = self._get(granule.href, stream=True)
        if resp.status_code >= 400:
            resp.close()
            raise ProviderError(f"{granule.href}: HTTP {resp.status_code}")
        resp.raw.decode_content = True
        return _Closing(resp)


class ModisStacSource(ModisSource):
    """MOD09A1 items from a STAC API (Planetary Computer ``modis-09A1-061`` by default, the layout
    stactools-modis writes): the item's original HDF4 granule (asset ``hdf``) is fetched, so the
    same reader and QA apply; the tile is searched on ``modis:horizontal-tile`` /
    ``modis:vertical-tile``. Hrefs are signed where the catalog's profile says so (Planetary
    Computer)."""

    def __init__(
        self,
        url: str = "https://planetarycomputer.microsoft.com/api/stac/v1",
        collection: str = "modis-09A1-061",
        timeout: float = 60.0,
        profile: str = "auto",
    ) -> None:

        super().__init__(url, None, timeout)
        self.url, self.collection = url.rstrip("/"), collection
        self.catalog = StacCatalog(url, profile, timeout)
        self.reader = AssetReader(timeout)

    @property
    def remote(self) -> bool:
        return True

    def describe(self) -> str:
        return f"STAC API {self.url} ({self.collection})"

    def search(self, tile: str, start: dt.date, end: dt.date) -> list[Granule]:
        tile = check_modis_tile(tile)
        h, v = int(tile[1:3]), int(tile[4:6])
        items = self.catalog.search(
            f"STAC API {self.url} collection {self.collection}",
            collections=[self.collection],
            datetime=f"{start.isoformat()}/{end.isoformat()}",
            query={"modis:horizontal-tile": {"eq": h}, "modis:vertical-tile": {"eq": v}},
        )
        out = []
        for item in items:
            asset = item.get("assets", {}).get("hdf")
            if not asset:
                continue
            granule = parse_granule(asset["href"].split("?")[0].rsplit("/", 1)[-1], asset["href"])
            if granule is not None and granule.tile == tile and start <= granule.date <= end:
                out.append(granule)
        return sorted(out, key=lambda g: g.date)

    def open(self, granule: Granule) -> Any:
        _, profile = self.catalog.open()
        return self.reader.open(granule.href, sign=profile.sign_hrefs)


class _Closing:
    def __init__(self, resp: Any) -> None:
        self.resp = resp

    def __enter__(self) -> IO[bytes]:
        return self.resp.raw

    def __exit__(self, *exc: object) -> None:
        self.resp.close()


def acquire_modis(
    ctx: Context,
    source: ModisSource,
    tiles: list[str],
    start: dt.date,
    end: dt.date,
    qa: ModisQA | None = None,
    progress: bool = False,
) -> dict[str, list[str]]:
    """Store and catalogue every granule of ``tiles`` between ``start`` and ``end``; a granule
    already catalogued is skipped. Returns tile -> granule ids (stored or already there)."""
    bucket = ctx.settings.MINIO_BUCKET_NAME_MODIS
    out: dict[str, list[str]] = {}
    for tile in tiles:
        granules = call_source(
            source,
            f"MODIS search {tile}",
            functools.partial(source.search, tile, start, end),
            ctx.settings.OUTAGE_TOLERANCE,
        )
        if not granules:
            log.warning("MODIS %s: no granule between %s and %s", tile, start, end)
        out[tile] = []
        with step(log, f"modis {tile}", len(granules), "granule", progress) as bar:
            for g in granules:
                bar.update(1)
                _store_granule(ctx, source, g, qa, bucket, out[tile])
    return out


def _store_granule(
    ctx: Context, source: ModisSource, g: Granule, qa: ModisQA | None, bucket: str, done: list[str]
) -> None:
    """Fetch one granule, read it once (QA applied) into a GeoTIFF, then catalogue it; a granule
    already catalogued is skipped, a failed one leaves nothing behind."""
    gid = g.name.removesuffix(".hdf")
    if ctx.catalog.exists("modis", gid):
        done.append(gid)
        return
    raw_key = join_key(g.tile, g.name)
    tif_key = join_key(g.tile, f"{gid}.tif")
    try:

        def fetch() -> None:
            with source.open(g) as stream:
                ctx.store.put_stream(bucket, raw_key, stream)

        call_source(source, f"MODIS {g.name}", fetch, ctx.settings.OUTAGE_TOLERANCE)
        with scratch_dir(ctx.settings.TMP_DIR) as tmp, local_copy(ctx.store, bucket, raw_key, tmp) as path:
            granule = read_mod09(path, qa)
        with scratch_dir(ctx.settings.TMP_DIR) as tmp:
            ctx.store.put_file(bucket, tif_key, write_geotiff(granule, Path(tmp) / "g.tif"))
    except BaseException:
        for key in (raw_key, tif_key):
            if ctx.store.exists(bucket, key):
                ctx.store.delete(bucket, key)
        raise
    valid = float((granule.reflectance[0] == granule.reflectance[0]).mean())
    records.store(
        ctx.catalog,
        records.ModisRecord(
            id=gid,
            granule_id=gid,
            tile=g.tile,
            date=g.date.isoformat(),
            product=g.name.split(".")[0],
            raw={"bucket": bucket, "key": raw_key},
            reflectance={"bucket": bucket, "key": tif_key},
            valid_fraction=round(valid, 4),
            qa=(qa or ModisQA()).__dict__,
            source=source.source,
        ),
    )
    done.append(gid)


def series_manifest(ctx: Context, tile: str, year: int, path: Path) -> Path:
    """The abundance stage's manifest for one MODIS tile and year, from the catalog (rasters
    read in place from the store)."""
    granules = [
        r
        for r in records.find(ctx.catalog, records.ModisRecord, {"tile": tile}, [("date", 1)])
        if r.date.startswith(str(year))
    ]
    if not granules:
        raise InputValidationError(f"no catalogued MODIS granule for {tile} in {year}: run `landcoverpy modis` first")
    items = [{"date": r.date, "path": ctx.store.raster_uri(r.reflectance.bucket, r.reflectance.key)} for r in granules]
    path.write_text(json.dumps(items, indent=1))
    return path
