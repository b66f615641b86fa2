"""A small STAC API for tests, run as its own process on loopback:

    python -m tests.stac_server --port P --items items.json --files DIR

Serves the landing page (item-search conformance), ``/search`` (GET and POST; collections,
datetime interval and ``query`` on ``grid:code``), ``/collections/{id}``, and the asset files under
``/files/`` with HTTP range support absent (whole-file streaming, like a plain object server).
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

CONFORMS = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
            "https://api.stacspec.org/v1.0.0/item-search#query"]


def make_handler(items: list[dict], files: Path, base: str, drop_first: int = 0,
                 drop_searches: int = 0) -> type[BaseHTTPRequestHandler]:
    drops = {"left": drop_first, "searches": drop_searches}

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

        def _search(self, params: dict) -> None:
            if drops["searches"] > 0:  # drop the connection without an answer
                drops["searches"] -= 1
                self.close_connection = True
                self.connection.shutdown(2)
                return
            out = items
            cols = params.get("collections")
            if cols:
                cols = cols.split(",") if isinstance(cols, str) else cols
                out = [i for i in out if i.get("collection") in cols]
            interval = params.get("datetime")
            if interval:
                lo, _, hi = interval.partition("/")
                out = [i for i in out if (lo in ("", "..") or i["properties"]["datetime"][:10] >= lo[:10])
                       and (hi in ("", "..") or i["properties"]["datetime"][:10] <= hi[:10])]
            query = params.get("query")
            if isinstance(query, str):
                query = json.loads(query)
            for key, cond in (query or {}).items():
                out = [i for i in out if i["properties"].get(key) == cond.get("eq")]
            self._json({"type": "FeatureCollection", "features": out,
                        "links": [{"rel": "self", "href": f"{base}/search"}]})

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path in ("", "/"):
                self._json({"type": "Catalog", "id": "test-stac", "description": "test", "stac_version": "1.0.0",
                            "conformsTo": CONFORMS,
                            "links": [{"rel": "self", "href": base + "/", "type": "application/json"},
                                      {"rel": "root", "href": base + "/", "type": "application/json"},
                                      {"rel": "search", "href": base + "/search", "type": "application/geo+json",
                                       "method": "GET"},
                                      {"rel": "search", "href": base + "/search", "type": "application/geo+json",
                                       "method": "POST"}]})
            elif url.path == "/conformance":
                self._json({"conformsTo": CONFORMS})
            elif url.path == "/search":
                self._search({k: v[0] for k, v in parse_qs(url.query).items()})
            elif url.path.startswith("/collections/"):
                cid = url.path.split("/")[2]
                self._json({"type": "Collection", "id": cid, "stac_version": "1.0.0", "description": cid,
                            "license": "proprietary", "links": [],
                            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                       "temporal": {"interval": [[None, None]]}}})
            elif url.path.startswith("/files/"):
                path = (files / url.path[len("/files/"):]).resolve()
                if files.resolve() not in path.parents or not path.is_file():
                    self._json({"code": "NotFound"}, 404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/tiff")
                self.send_header("Content-Length", str(path.stat().st_size))
                self.end_headers()
                if drops["left"] > 0:  # a server that drops the connection half way
                    drops["left"] -= 1
                    self.wfile.write(path.read_bytes()[: path.stat().st_size // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        self.wfile.write(chunk)
            else:
                self._json({"code": "NotFound"}, 404)

        def do_POST(self) -> None:  # noqa: N802
            if urlparse(self.path).path != "/search":
                self._json({"code": "NotFound"}, 404)
                return
            length = int(self.headers.get("Content-Length", 0))
            self._search(json.loads(self.rfile.read(length) or b"{}"))

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--items", required=True)
    ap.add_argument("--files", required=True)
    ap.add_argument("--drop-first", type=int, default=0, help="drop the first N file downloads half way")
    ap.add_argument("--drop-searches", type=int, default=0, help="drop the first N searches without an answer")
    args = ap.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    items = json.loads(Path(args.items).read_text().replace("{BASE}", base))
    ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(items, Path(args.files), base, args.drop_first,
                                                                         args.drop_searches)).serve_forever()


if __name__ == "__main__":
    main()
