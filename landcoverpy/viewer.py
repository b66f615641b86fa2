"""A zoomable map page for the maps of a run, when a COG tile server is configured
(``TILE_SERVER_URL``: TiTiler, the optional `viewer` service of docker-compose.yml).

The tile server reads the COGs straight from the object store (``s3://bucket/key``) and renders
them with their own colour tables; the page is Leaflet over OpenStreetMap, one overlay per map
level, each with its legend. Pure rendering: records in, HTML out.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote

from landcoverpy.assets.stac import footprint
from landcoverpy.records import MapRecord
from landcoverpy.reports import class_colours

LEAFLET = "https://unpkg.com/leaflet@1.9.4/dist"


def tile_url(server: str, bucket: str, key: str) -> str:
    """TiTiler's XYZ template for one COG in the store."""
    return f"{server.rstrip('/')}/cog/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?url=" + quote(
        f"s3://{bucket}/{key}", safe=""
    )


def map_page(records: list[MapRecord], server: str, title: str = "landcoverpy maps") -> str:

    layers, bounds = [], []
    legends = []
    for rec in records:
        _, bbox = footprint(rec.pixel_grid)
        bounds.append(bbox)
        for level, loc in rec.outputs.items():
            names = rec.class_values(level)
            if not names:  # scores (confidence, uncertainty) are not overlays
                continue
            layers.append(
                {"name": f"{rec.tile} {level.replace('_', ' ')}", "url": tile_url(server, loc.bucket, loc.key)}
            )
            colours = class_colours(names)
            legends.append(
                (
                    f"{rec.tile} {level.replace('_', ' ')}",
                    [(n, colours[v]) for n, v in sorted(names.items(), key=lambda kv: kv[1])],
                )
            )
    west = min(b[0] for b in bounds) if bounds else -180
    south = min(b[1] for b in bounds) if bounds else -85
    east = max(b[2] for b in bounds) if bounds else 180
    north = max(b[3] for b in bounds) if bounds else 85
    legend_html = "".join(
        f"<div class='legend'><strong>{escape(name)}</strong>"
        + "".join(
            f"<div><span style='background:#{r:02x}{g:02x}{b:02x}'></span>{escape(cls)}</div>"
            for cls, (r, g, b) in entries
        )
        + "</div>"
        for name, entries in legends
    )
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>
<link rel="stylesheet" href="{LEAFLET}/leaflet.css">
<script src="{LEAFLET}/leaflet.js"></script>
<style>html,body,#map{{height:100%;margin:0}}#legends{{position:absolute;right:10px;bottom:20px;z-index:1000;
background:#fff;padding:6px 10px;font:12px sans-serif;max-height:60%;overflow:auto}}
.legend span{{display:inline-block;width:12px;height:12px;margin-right:5px;border:1px solid #555}}</style>
</head><body><div id="map"></div><div id="legends">{legend_html}</div>
<script>
const map = L.map('map');
const base = L.tileLayer('https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png',
  {{maxZoom: 19, attribution: '&copy; OpenStreetMap contributors'}}).addTo(map);
const layers = {json.dumps(layers)};
const overlays = {{}};
layers.forEach((l, i) => {{ const t = L.tileLayer(l.url, {{maxZoom: 19, opacity: 0.85}});
  if (i === 0) t.addTo(map); overlays[l.name] = t; }});
L.control.layers({{'OpenStreetMap': base}}, overlays, {{collapsed: false}}).addTo(map);
map.fitBounds([[{south}, {west}], [{north}, {east}]]);
</script></body></html>
"""
