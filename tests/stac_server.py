"""A small STAC API for tests, run as its own process on loopback:

    python -m tests.stac_server --port P --items items.json --files DIR [--landing-id ID]
        [--conforms query,filter] [--page-size N]

Serves the landing page (item search, plus the query and/or filter conformance classes asked
for), ``/search`` (GET and POST, or only those ``--methods`` offers: collections, datetime
interval, ``bbox``, ``query`` with ``eq``,
CQL2-JSON ``filter`` with ``=`` and ``and``; results in pages of ``limit`` items, at most
``--page-size``, linked by ``next`` as STAC APIs page: a token in the GET query or in the POST
body), ``/collections/{id}``, a Planetary Computer-style SAS token endpoint
(``/sas/v1/token/{account}/{container}``), ``/_log`` (the searches and token requests received,
for tests to assert on), ``/_served`` (asset bytes sent), and the asset files under ``/files/``
(whole, or one byte range as COG readers ask).
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

CORE = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"]
EXTENSIONS = {
    "query": ["https://api.stacspec.org/v1.0.0/item-search#query"],
    "filter": [
        "https://api.stacspec.org/v1.0.0/item-search#filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
        "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    ],
}


def _cql2(expr: dict[str, Any], props: dict[str, Any]) -> bool:
    op, args = expr.get("op"), expr.get("args", [])
    if op == "and":
        return all(_cql2(a, props) for a in args)
    if op == "=":
        return props.get(args[0]["property"]) == args[1]
    raise ValueError(f"unsupported CQL2 operator {op!r}")


def _bbox_hits(item: dict[str, Any], bbox: list[float]) -> bool:
    ib = item.get("bbox")
    return ib is None or not (ib[2] < bbox[0] or ib[0] > bbox[2] or ib[3] < bbox[1] or ib[1] > bbox[3])


def matching(items: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    out = items
    cols = params.get("collections")
    if cols:
        cols = cols.split(",") if isinstance(cols, str) else cols
        out = [i for i in out if i.get("collection") in cols]
    interval = params.get("datetime")
    if interval:  # an item's instant, or its start..end range where datetime is null, overlaps
        lo, _, hi = interval.partition("/")

        def span(item: dict[str, Any]) -> tuple[str, str]:
            props = item["properties"]
            when = props.get("datetime")
            return (when or props["start_datetime"])[:10], (when or props["end_datetime"])[:10]

        out = [
            i
            for i in out
            if (lo in ("", "..") or span(i)[1] >= lo[:10]) and (hi in ("", "..") or span(i)[0] <= hi[:10])
        ]
    bbox = params.get("bbox")
    if bbox:
        bbox = [float(v) for v in bbox.split(",")] if isinstance(bbox, str) else bbox
        out = [i for i in out if _bbox_hits(i, bbox)]
    query = params.get("query")
    if isinstance(query, str):
        query = json.loads(query)
    for key, cond in (query or {}).items():
        out = [i for i in out if i["properties"].get(key) == cond.get("eq")]
    filt = params.get("filter")
    if isinstance(filt, str):
        filt = json.loads(filt)
    if filt:
        out = [i for i in out if _cql2(filt, i["properties"])]
    return out


def make_handler(
    items: list[dict],
    files: Path,
    base: str,
    drop_first: int = 0,
    drop_searches: int = 0,
    landing_id: str = "test-stac",
    conforms: tuple[str, ...] = ("query",),
    page_size: int = 100,
    methods: tuple[str, ...] = ("GET", "POST"),
) -> type[BaseHTTPRequestHandler]:
    drops = {"left": drop_first, "searches": drop_searches}
    log: list[dict[str, Any]] = []
    served = {"bytes": 0}  # asset bytes sent, whole files and ranges
    conforms_to = CORE + [c for name in conforms for c in EXTENSIONS[name]]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _json(self, obj: object, status: int = 200) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _search(self, params: dict[str, Any], method: str) -> None:
            if drops["searches"] > 0:  # drop the connection without an answer
                drops["searches"] -= 1
                self.close_connection = True
                self.connection.shutdown(2)
                return
            log.append({"kind": "search", "method": method, "params": params})
            try:
                found = matching(items, params)
            except ValueError as exc:
                self._json({"code": "BadRequest", "description": str(exc)}, 400)
                return
            limit = min(int(params.get("limit", 10)), page_size)
            start = int(params.get("token", 0) or 0)
            page = found[start : start + limit]
            links: list[dict[str, Any]] = [{"rel": "self", "href": f"{base}/search"}]
            if start + limit < len(found):
                nxt = {k: v for k, v in params.items() if k != "token"} | {"token": start + limit}
                if method == "GET":
                    links.append(
                        {
                            "rel": "next",
                            "href": f"{base}/search?{urlencode(nxt)}",
                            "method": "GET",
                            "type": "application/geo+json",
                        }
                    )
                else:
                    links.append(
                        {
                            "rel": "next",
                            "href": f"{base}/search",
                            "method": "POST",
                            "body": nxt,
                            "type": "application/geo+json",
                        }
                    )
            self._json(
                {
                    "type": "FeatureCollection",
                    "features": page,
                    "links": links,
                    "numberMatched": len(found),
                    "numberReturned": len(page),
                }
            )

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path in ("", "/"):
                self._json(
                    {
                        "type": "Catalog",
                        "id": landing_id,
                        "description": "test",
                        "stac_version": "1.0.0",
                        "conformsTo": conforms_to,
                        "links": [
                            {"rel": "self", "href": base + "/", "type": "application/json"},
                            {"rel": "root", "href": base + "/", "type": "application/json"},
                            *(
                                {"rel": "search", "href": base + "/search", "type": "application/geo+json", "method": m}
                                for m in methods
                            ),
                        ],
                    }
                )
            elif url.path == "/conformance":
                self._json({"conformsTo": conforms_to})
            elif url.path == "/search":
                self._search({k: v[0] for k, v in parse_qs(url.query).items()}, "GET")
            elif url.path == "/_log":
                self._json(log)
            elif url.path == "/_served":
                self._json(served)
            elif url.path.startswith("/sas/v1/token/"):
                account, container = url.path.split("/")[4:6]
                log.append({"kind": "token", "account": account, "container": container})
                self._json(
                    {
                        "msft:expiry": "2099-01-01T00:00:00Z",
                        "token": f"sv=2021-06-08&se=2099-01-01&sp=rl&sig=test-{account}-{container}",
                    }
                )
            elif url.path.startswith("/collections/"):
                cid = url.path.split("/")[2]
                self._json(
                    {
                        "type": "Collection",
                        "id": cid,
                        "stac_version": "1.0.0",
                        "description": cid,
                        "license": "proprietary",
                        "links": [],
                        "extent": {
                            "spatial": {"bbox": [[-180, -90, 180, 90]]},
                            "temporal": {"interval": [[None, None]]},
                        },
                    }
                )
            elif url.path.startswith("/files/"):
                self._file(url.path[len("/files/") :])
            else:
                self._json({"code": "NotFound"}, 404)

        def _file(self, rel: str) -> None:
            path = (files / rel).resolve()
            if files.resolve() not in path.parents or not path.is_file():
                self._json({"code": "NotFound"}, 404)
                return
            size = path.stat().st_size
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes="):  # one byte range, as COG readers ask
                first, _, last = wanted[len("bytes=") :].partition("-")
                start, end = int(first), min(int(last) if last else size - 1, size - 1)
                with open(path, "rb") as fh:
                    fh.seek(start)
                    body = fh.read(end - start + 1)
                self.send_response(206)
                self.send_header("Content-Type", "image/tiff")
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                served["bytes"] += len(body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            served["bytes"] += size
            if drops["left"] > 0:  # a server that drops the connection half way
                drops["left"] -= 1
                self.wfile.write(path.read_bytes()[: path.stat().st_size // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    self.wfile.write(chunk)

        def do_POST(self) -> None:  # noqa: N802
            if urlparse(self.path).path != "/search":
                self._json({"code": "NotFound"}, 404)
                return
            if "POST" not in methods:
                self._json({"code": "MethodNotAllowed", "description": "search by GET only"}, 405)
                return
            length = int(self.headers.get("Content-Length", 0))
            self._search(json.loads(self.rfile.read(length) or b"{}"), "POST")

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--items", required=True)
    ap.add_argument("--files", required=True)
    ap.add_argument("--drop-first", type=int, default=0, help="drop the first N file downloads half way")
    ap.add_argument("--drop-searches", type=int, default=0, help="drop the first N searches without an answer")
    ap.add_argument("--landing-id", default="test-stac", help="the landing page's id (catalogs are told apart by it)")
    ap.add_argument("--conforms", default="query", help="extensions conformed to: query, filter, both or none")
    ap.add_argument("--page-size", type=int, default=100, help="most items per page, whatever limit asks")
    ap.add_argument("--methods", default="GET,POST", help="search methods offered: GET, POST or both")
    ap.add_argument("--base-url", help="the address links and hrefs name (a proxy in front); default: this server")
    args = ap.parse_args()
    base = args.base_url or f"http://127.0.0.1:{args.port}"
    items = json.loads(Path(args.items).read_text().replace("{BASE}", base))
    conforms = tuple(c for c in args.conforms.split(",") if c and c != "none")
    ThreadingHTTPServer(
        ("127.0.0.1", args.port),
        make_handler(
            items,
            Path(args.files),
            base,
            args.drop_first,
            args.drop_searches,
            args.landing_id,
            conforms,
            args.page_size,
            tuple(m.strip().upper() for m in args.methods.split(",")),
        ),
    ).serve_forever()


if __name__ == "__main__":
    main()
