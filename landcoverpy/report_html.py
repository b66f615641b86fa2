"""The run report as one self-contained HTML page (pictures embedded, no script, no network):
maps with their legends and class areas, accuracy of both levels (spatial cross-validation and
held-out points) with confusion matrices, the run's settings and lineage, links to every output.

Pure rendering from plain data (records, metrics, picture bytes); the caller gathers them and
decides where links point (the export folder, or keys in the bucket).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from landcoverpy.models.metrics import ClassificationScores

if TYPE_CHECKING:
    from landcoverpy.pipeline.change import ChangeSummary

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','WenQuanYi Micro Hei',sans-serif;
margin:0 auto;max-width:1180px;padding:24px;color:#1f2933;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #e4e7eb;padding-bottom:.2em;margin-top:1.8em}
h3{margin-bottom:.3em}.muted{color:#616e7c;font-size:.92em}
table{border-collapse:collapse;margin:.5em 0 1em 0;font-size:.92em}
th,td{border:1px solid #cbd2d9;padding:3px 8px;text-align:right}th{background:#f5f7fa}
td.name,th.name{text-align:left}.swatch{display:inline-block;width:14px;height:14px;border:1px solid #52606d;
vertical-align:middle;margin-right:6px}.maps{display:flex;flex-wrap:wrap;gap:16px}
.map{flex:1 1 340px;max-width:560px}.map img{width:100%;border:1px solid #e4e7eb}
.problems{background:#fff3c4;border:1px solid #f0b429;padding:8px 14px}
.cm td.diag{background:#d9f2e6;font-weight:600}code{font-size:.9em;background:#f5f7fa;padding:0 3px}
"""


@dataclass
class MapView:
    """One tile's maps, as the report shows them."""

    tile: str
    map_id: str
    quicklooks: dict[str, bytes]  # output name -> PNG
    legends: dict[str, list[tuple[int, str, tuple[int, int, int]]]]  # level -> (value, name, colour)
    areas_km2: dict[str, dict[str, float]]  # level -> class name -> km2
    links: dict[str, str]  # label -> href
    unmapped: tuple[int, int] = (0, 0)  # pixels without a class, pixels of the tile


@dataclass
class ChangeView:
    """One change product (an earlier map to this run's), as the report shows it."""

    tile: str
    level: str
    change_id: str
    from_map: str
    to_map: str
    summary: ChangeSummary
    figure: bytes | None
    links: dict[str, str]
    from_origin: str = ""  # what made the earlier map (model, seasons)


@dataclass
class ReportData:
    run_id: str
    created: str
    stages: list[dict[str, Any]]
    maps: list[MapView]
    category_metrics: dict[str, Any]
    category_baseline_f1: float | None
    subcategory_metrics: dict[str, dict[str, Any]]  # category name -> metrics
    holdout: dict[str, Any] | None
    settings: dict[str, Any]
    lineage: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things to act on that did not stop the run
    links: dict[str, str] = field(default_factory=dict)  # other outputs: label -> href
    pictures: dict[str, bytes] = field(default_factory=dict)  # confusion matrices: title -> PNG
    changes: list[ChangeView] = field(default_factory=list)
    change_from: str | None = None  # the earlier map or run the changes are from


def unmapped_text(missing: int, total: int) -> str:
    """How much of a map has no class, and why (the classify summary line says the same)."""
    return (
        f"{missing} pixels ({100.0 * missing / total:.1f} %) without a class: a feature has no data there "
        "(outside the products' footprint, or no clear observation in a season; see COMPOSITE_GAP_FILL)"
    )


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _metric_row(name: str, metrics: dict[str, Any], baseline: float | None = None) -> str:
    m = ClassificationScores.of(metrics)
    base = f"<td>{baseline:.3f}</td>" if baseline is not None else "<td>–</td>"
    return (
        f'<tr><td class="name">{escape(name)}</td><td>{m.overall_accuracy:.3f}</td><td>{m.kappa:.3f}</td>'
        f"<td>{m.macro_f1:.3f}</td>{base}<td>{'' if m.n is None else m.n}</td></tr>"
    )


def _per_class(metrics: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><td class="name">{escape(c)}</td><td>{v.precision:.3f}</td><td>{v.recall:.3f}</td>'
        f"<td>{v.f1:.3f}</td><td>{v.support}</td></tr>"
        for c, v in ClassificationScores.of(metrics).per_class.items()
    )
    return (
        '<table class="per-class"><tr><th class="name">class</th><th>precision (user\'s)</th>'
        "<th>recall (producer's)</th><th>F1</th><th>samples</th></tr>" + rows + "</table>"
    )


def _confusion(metrics: dict[str, Any]) -> str:
    m = ClassificationScores.of(metrics)
    labels, cm = m.labels, m.confusion_matrix
    head = "".join(f"<th>{escape(lab)}</th>" for lab in labels)
    rows = ""
    for i, lab in enumerate(labels):
        cells = "".join(f'<td class="{"diag" if i == j else ""}">{v}</td>' for j, v in enumerate(cm[i]))
        rows += f'<tr><th class="name">{escape(lab)}</th>{cells}</tr>'
    return f'<table class="cm"><tr><th class="name">true \\ predicted</th>{head}</tr>{rows}</table>'


def _pm(value: float | None, ci: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")


def _area_estimates(level: str, est: dict[str, Any]) -> str:
    """Olofsson et al. (2014) estimates from the held-out points: accuracies and areas with 95 % CIs."""
    rows = "".join(
        f'<tr><td class="name">{escape(c)}</td><td>{_pm(v["users_accuracy"], v["users_accuracy_ci95"])}</td>'
        f"<td>{_pm(v['producers_accuracy'], v['producers_accuracy_ci95'])}</td>"
        f"<td>{_pm(v['mapped_area'], None, 2)}</td>"
        f"<td>{_pm(v['estimated_area'], v['estimated_area_ci95'], 2)}</td></tr>"
        for c, v in est.get("classes", {}).items()
    )
    return (
        f"<h4>Area estimates from the held-out points: {escape(level)}</h4>"
        f"<p>Overall accuracy {_pm(est.get('overall_accuracy'), est.get('overall_accuracy_ci95'))} (95 % CI), "
        "error matrix in area proportions (Olofsson et al. 2014). These intervals hold when the points are a "
        "random sample within each map class (see <code>landcoverpy sample-design</code>); for points collected "
        "otherwise they are indicative.</p>"
        '<table class="area-estimates"><tr><th class="name">class</th><th>user\'s accuracy</th>'
        "<th>producer's accuracy</th><th>mapped km²</th><th>estimated km² (95 % CI)</th></tr>" + rows + "</table>"
    )


def _links(links: dict[str, str]) -> str:
    return (
        "<ul>"
        + "".join(f'<li><a href="{escape(href, quote=True)}">{escape(label)}</a></li>' for label, href in links.items())
        + "</ul>"
    )


def _legend(entries: list[tuple[int, str, tuple[int, int, int]]], areas: dict[str, float]) -> str:
    rows = "".join(
        f'<tr><td class="name"><span class="swatch" style="background:#{r:02x}{g:02x}{b:02x}"></span>'
        f"{escape(name)}</td><td>{value}</td><td>{areas.get(name, 0.0):.2f}</td></tr>"
        for value, name, (r, g, b) in entries
    )
    return (
        '<table class="legend"><tr><th class="name">class</th><th>value</th><th>area (km²)</th></tr>'
        + rows
        + "</table>"
    )


def _kv(d: dict[str, Any]) -> str:
    return (
        "<table>"
        + "".join(
            f'<tr><th class="name">{escape(str(k))}</th><td class="name"><code>{escape(str(v))}</code></td></tr>'
            for k, v in d.items()
        )
        + "</table>"
    )


def _changes(changes: list[ChangeView], since: str | None) -> str:
    parts = [
        f"<h2 id='change'>Change since {escape(since or 'the earlier map')}</h2>"
        "<p class='muted'>Transitions from the earlier map to this run's, in hectares; a change map with its "
        "legend is among the files.</p>"
    ]
    for view in changes:
        got = view.summary
        parts.append(
            f"<h3>Tile {escape(view.tile)}, {escape(view.level)}</h3><p class='muted'>change "
            f"<code>{escape(view.change_id)}</code> from map <code>{escape(view.from_map)}</code> to "
            f"<code>{escape(view.to_map)}</code>: {got.changed_ha:,.1f} ha changed class, "
            f"{100 * got.changed_share:.1f} % of the area both maps cover</p>"
        )
        if view.from_origin:
            parts.append(f"<p class='muted'>The earlier map: {escape(view.from_origin)}.</p>")
        if view.figure:
            parts.append(
                "<div class='maps'><div class='map'>"
                + _img(view.figure, f"{view.tile} {view.level} transitions")
                + "</div></div>"
            )
        moved = got.changed[:10]
        if moved:
            parts.append(
                "<table class='accuracy'><tr><th class='name'>largest changes</th><th>hectares</th><th>%</th></tr>"
                + "".join(
                    f"<tr><td class='name'>{escape(n)}</td><td>{ha:,.1f}</td>"
                    f"<td>{100 * ha / got.total_ha:.2f}</td></tr>"
                    for n, ha in moved
                )
                + "</table>"
            )
        parts.append("<h4>Files</h4>" + _links(view.links))
    return "".join(parts)


def render(data: ReportData) -> str:
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>landcoverpy run {escape(data.run_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>Land cover maps</h1><p class='muted'>landcoverpy run <code>{escape(data.run_id)}</code>, "
        f"{escape(data.created)}</p>",
    ]
    if data.problems:
        parts.append(
            "<div class='problems'><strong>Incomplete run</strong><ul>"
            + "".join(f"<li>{escape(p)}</li>" for p in data.problems)
            + "</ul></div>"
        )
    parts.append("<h2 id='maps'>Maps</h2>")
    for view in data.maps:
        parts.append(
            f"<h3>Tile {escape(view.tile)}</h3><p class='muted'>map <code>{escape(view.map_id)}</code></p>"
            "<div class='maps'>"
        )
        for name, png in view.quicklooks.items():
            parts.append(
                f"<div class='map'>{_img(png, f'{view.tile} {name}')}"
                f"<div class='muted'>{escape(name.replace('_', ' '))}</div></div>"
            )
        parts.append("</div>")
        missing, total = view.unmapped
        if missing and total:
            parts.append(f"<p class='unmapped'>{escape(unmapped_text(missing, total))}</p>")
        for level, entries in view.legends.items():
            parts.append(
                f"<h4>Legend and class areas: {escape(level)}</h4>" + _legend(entries, view.areas_km2.get(level, {}))
            )
        parts.append("<h4>Files</h4>" + _links(view.links))
    if data.changes:
        parts.append(_changes(data.changes, data.change_from))
    if data.notes:
        parts.append(
            "<div class='problems'><strong>To act on</strong><ul>"
            + "".join(f"<li>{escape(n)}</li>" for n in data.notes)
            + "</ul></div>"
        )
    parts.append(
        "<h2 id='accuracy'>Accuracy</h2><h3>Spatial-block cross-validation</h3>"
        "<table class='accuracy'><tr><th class='name'>model</th><th>overall accuracy</th><th>kappa</th>"
        "<th>macro F1</th><th>majority-class macro F1</th><th>samples</th></tr>"
        + _metric_row("category", data.category_metrics, data.category_baseline_f1)
        + "".join(_metric_row(f"subcategory of {c}", m) for c, m in data.subcategory_metrics.items())
        + "</table>"
    )
    parts.append("<h3>Category level</h3>" + _per_class(data.category_metrics) + _confusion(data.category_metrics))
    for cat, m in data.subcategory_metrics.items():
        parts.append(f"<h3>Subcategories of {escape(cat)}</h3>" + _per_class(m) + _confusion(m))
    if data.holdout and data.holdout.get("n"):
        h = data.holdout
        parts.append(
            f"<h3>Held-out points ({h['n']}, never used in training)</h3>"
            "<table class='accuracy'><tr><th class='name'>level</th><th>overall accuracy</th><th>kappa</th>"
            "<th>macro F1</th><th>–</th><th>points</th></tr>"
            + _metric_row("category", h["category"])
            + (_metric_row("subcategory", h["subcategory"]) if h.get("subcategory") else "")
            + "</table>"
            + _per_class(h["category"])
            + _confusion(h["category"])
        )
        for level, est in (h.get("area") or {}).items():
            parts.append(_area_estimates(level, est))
    if data.pictures:
        parts.append(
            "<div class='maps'>"
            + "".join(f"<div class='map'>{_img(png, title)}</div>" for title, png in data.pictures.items())
            + "</div>"
        )
    parts.append(
        "<h2 id='run'>Run</h2><table><tr><th class='name'>stage</th><th>seconds</th><th class='name'>"
        "done or reused</th><th class='name'>detail</th></tr>"
        + "".join(
            f"<tr><td class='name'>{escape(s['name'])}</td><td>{s['seconds']:.1f}</td>"
            f"<td class='name'>{'done' if s['did_work'] else 'reused'}</td>"
            f"<td class='name'>{escape(s.get('detail', ''))}</td></tr>"
            for s in data.stages
        )
        + "</table>"
    )
    parts.append("<h3>Settings</h3>" + _kv(data.settings) + "<h3>Lineage</h3>" + _kv(data.lineage))
    if data.links:
        parts.append("<h3>Other outputs</h3>" + _links(data.links))
    parts.append("</body></html>")
    return "\n".join(parts)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


Linker = Callable[[dict[str, Any], str], str]
