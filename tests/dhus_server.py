"""A DHuS-compatible hub for tests, run as its own process on loopback: the OpenSearch and OData
calls sentinelsat makes (``/search?format=json``, ``/odata/v1/Products('uuid')?$format=json``,
HEAD/GET ``/odata/v1/Products('uuid')/$value``, ``/Online/$value``), behind HTTP basic auth.

    python -m tests.dhus_server --port P --products products.json --user U --password W

``products.json``: ``[{"uuid", "title", "tile", "begin", "cloud", "baseline", "zip"}]``; a product
with ``"wrong_md5": true`` is listed with a checksum its bytes do not have (a corrupted archive).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


def make_handler(products: list[dict], user: str, password: str, base: str) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    by_uuid = {p["uuid"]: p for p in products}
    for p in products:
        data = Path(p["zip"]).read_bytes()
        p["md5"], p["size"] = hashlib.md5(data).hexdigest().upper(), len(data)
        if p.get("wrong_md5"):
            p["md5"] = hashlib.md5(data + b"corrupted").hexdigest().upper()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(
            self, body: bytes, status: int = 200, ctype: str = "application/json", extra: dict | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") != expected:
                self._send(b"Unauthorized", 401, "text/plain", {"WWW-Authenticate": 'Basic realm="DHuS"'})
                return False
            return True

        def _search(self, q: str) -> None:
            tile = re.search(r"filename:\*_T(\w{5})_\*", q)
            dates = re.search(r"beginPosition:\[\"?([^\" ]+)\"? TO \"?([^\"\]]+)\"?\]", q)
            hits = []
            for p in products:
                if tile and p["tile"] != tile.group(1):
                    continue
                if dates and not (dates.group(1)[:10] <= p["begin"][:10] <= dates.group(2)[:10]):
                    continue
                hits.append(
                    {
                        "id": p["uuid"],
                        "title": p["title"],
                        "link": [{"href": f"{base}/odata/v1/Products('{p['uuid']}')/$value"}],
                        "summary": "test",
                        "date": [{"name": "beginposition", "content": p["begin"]}],
                        "double": {"name": "cloudcoverpercentage", "content": str(p["cloud"])},
                        "str": [
                            {"name": "processingbaseline", "content": p["baseline"]},
                            {"name": "platformname", "content": "Sentinel-2"},
                            {"name": "tileid", "content": p["tile"]},
                        ],
                    }
                )
            self._send(json.dumps({"feed": {"opensearch:totalResults": str(len(hits)), "entry": hits}}).encode())

        def _odata(self, product: dict) -> None:
            ms = int(dt.datetime.fromisoformat(product["begin"].replace("Z", "+00:00")).timestamp() * 1000)
            gml = (
                '<gml:Polygon xmlns:gml="http://www.opengis.net/gml"><gml:outerBoundaryIs><gml:LinearRing>'
                "<gml:coordinates>37.6,-75.7 37.8,-75.7 37.8,-75.5 37.6,-75.5 37.6,-75.7</gml:coordinates>"
                "</gml:LinearRing></gml:outerBoundaryIs></gml:Polygon>"
            )
            self._send(
                json.dumps(
                    {
                        "d": {
                            "Id": product["uuid"],
                            "Name": product["title"],
                            "ContentLength": str(product["size"]),
                            "Checksum": {"Algorithm": "MD5", "Value": product["md5"]},
                            "ContentDate": {"Start": f"/Date({ms})/", "End": f"/Date({ms})/"},
                            "ContentGeometry": gml,
                            "Online": True,
                            "CreationDate": f"/Date({ms})/",
                            "IngestionDate": f"/Date({ms})/",
                            "__metadata": {"media_src": f"{base}/odata/v1/Products('{product['uuid']}')/$value"},
                            "Attributes": {"results": []},
                        }
                    }
                ).encode()
            )

        def _route(self) -> None:
            if not self._authorised():
                return
            url = urlparse(self.path)
            path = unquote(url.path)
            if path.rstrip("/").endswith("/search"):
                self._search(parse_qs(url.query).get("q", [""])[0])
                return
            m = re.search(r"/odata/v1/Products\('([^']+)'\)(.*)$", path)
            if not m or m.group(1) not in by_uuid:
                self._send(b'{"error": "not found"}', 404)
                return
            product, rest = by_uuid[m.group(1)], m.group(2)
            if rest == "":
                self._odata(product)
            elif rest == "/Online/$value":
                self._send(b"true")
            elif rest == "/$value":
                data = Path(product["zip"]).read_bytes()
                rng = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
                start = int(rng.group(1)) if rng else 0
                self._send(
                    data[start:],
                    206 if rng else 200,
                    "application/octet-stream",
                    {"Content-Disposition": f'attachment; filename="{product["title"]}.zip"'},
                )
            else:
                self._send(b'{"error": "not found"}', 404)

        do_GET = _route  # noqa: N815
        do_HEAD = _route  # noqa: N815

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--products", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    args = ap.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    products = json.loads(Path(args.products).read_text())
    ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(products, args.user, args.password, base)
    ).serve_forever()


if __name__ == "__main__":
    main()
