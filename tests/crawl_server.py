"""A local stand-in for image search engines, on 127.0.0.1, for the crawl tests and benchmark.

It serves result pages in the formats icrawler's parsers read, so the real parsers run on them:

* Google: ``/google/search?q=..&ijn=N`` -> an HTML page whose ``<script>`` holds the image URLs
  in an ``AF_initDataCallback`` data array (GoogleParser's regex reads URLs from scripts);
* Bing: ``/bing/images/async?q=..&first=N`` -> ``div.imgpt > a[m]`` tiles whose ``m`` attribute
  is HTML-escaped JSON with ``murl`` (BingParser);
* Baidu: ``/baidu/search/acjson?word=..&pn=N&rn=30`` -> JSON ``{"data": [{"hoverURL": ..}]}``.

and images under ``/img/<name>.jpg`` with a chosen behaviour: a real photo (bytes from
``../shared/datasets/landmarks-real``), an HTTP status, a slow answer, an HTML page, a truncated
JPEG, an empty body, or a few 503s before the photo. Every request is counted.
"""

from __future__ import annotations

import contextlib
import html
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from PIL import Image

PAGE_SIZE = {"google": 100, "bing": 20, "baidu": 30}


@dataclass
class Behaviour:
    kind: str  # photo | status | slow | html | truncated | empty | flaky
    path: Path | None = None
    status: int = 200
    seconds: float = 0.0
    fail_times: int = 0
    keep_fraction: float = 0.5


def _mime(path: Path) -> str:
    with Image.open(path) as im:
        return Image.MIME.get(im.format or "", "application/octet-stream")


class SearchServer:
    """Start with ``with SearchServer() as server:``; ``server.endpoints()`` are the engine base
    URLs to put in CrawlOptions."""

    def __init__(self, image_latency_s: float = 0.0) -> None:
        self.results: dict[tuple[str, str], list[str]] = {}
        self.images: dict[str, Behaviour] = {}
        self.page_status: dict[str, int] = {}
        self.empty_engines: set[str] = set()
        self.hits: Counter[str] = Counter()
        self.page_requests: list[str] = []
        self.image_latency_s = image_latency_s
        self._lock = threading.Lock()
        self._bytes: dict[Path, tuple[bytes, str]] = {}
        self._httpd: ThreadingHTTPServer | None = None

    # -- set up ---------------------------------------------------------------------------
    def __enter__(self) -> SearchServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                # The client may give up first (a timeout test).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def endpoints(self) -> dict[str, str]:
        return {engine: f"{self.base}/{engine}" for engine in ("google", "bing", "baidu")}

    def url(self, name: str) -> str:
        return f"{self.base}/img/{name}.jpg"

    def photo(self, name: str, path: Path) -> str:
        self.images[name] = Behaviour("photo", path)
        return name

    def add(self, name: str, behaviour: Behaviour) -> str:
        self.images[name] = behaviour
        return name

    def set_results(self, engine: str, query: str, names: list[str]) -> None:
        self.results[(engine, query)] = list(names)

    def image_hits(self, name: str) -> int:
        return self.hits[f"/img/{name}.jpg"]

    # -- serving --------------------------------------------------------------------------
    def _read(self, path: Path) -> bytes:
        return self._cached(path)[0]

    def _cached(self, path: Path) -> tuple[bytes, str]:
        if path not in self._bytes:
            self._bytes[path] = (path.read_bytes(), _mime(path))
        return self._bytes[path]

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        with self._lock:
            self.hits[parts.path] += 1
            count = self.hits[parts.path]
        if parts.path.startswith("/img/"):
            self._image(h, parts.path[len("/img/") : -len(".jpg")], count)
            return
        engine = parts.path.strip("/").split("/")[0]
        with self._lock:
            self.page_requests.append(h.path)
        if engine in self.page_status:
            self._send(h, self.page_status[engine], b"<html>busy</html>", "text/html")
            return
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if engine == "google":
            start = int(params.get("ijn", "0")) * PAGE_SIZE["google"]
            names = self._page(engine, params.get("q", ""), start)
            self._send(h, 200, self._google_page(params.get("q", ""), names), "text/html")
        elif engine == "bing":
            names = self._page(engine, params.get("q", ""), int(params.get("first", "0")))
            self._send(h, 200, self._bing_page(names), "text/html")
        elif engine == "baidu":
            names = self._page(engine, params.get("word", ""), int(params.get("pn", "0")))
            body = json.dumps(
                {
                    "queryEnc": params.get("word", ""),
                    "data": [{"hoverURL": self.url(n)} for n in names] + [{}],
                }
            )
            self._send(h, 200, body.encode(), "application/json")
        else:
            self._send(h, 404, b"not found", "text/plain")

    def _page(self, engine: str, query: str, start: int) -> list[str]:
        if engine in self.empty_engines:
            return []
        return self.results.get((engine, query), [])[start : start + PAGE_SIZE[engine]]

    def _google_page(self, query: str, names: list[str]) -> bytes:
        if not names:
            # What Google shows a client it will not serve: no result data at all.
            return (
                b"<!doctype html><html><head><title>Before you continue to Google</title></head>"
                b"<body><div>We use cookies and data to deliver and maintain Google services."
                b"</div><form action='/save'><button>Accept all</button></form>"
                b"<script>var consent = {pending: true};</script></body></html>"
            )
        items = ",".join(
            f'[1,[0,"id{i}",["https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9Gc{i}",'
            f'180,240],["{self.url(n)}",800,600],null,0,"rgb(40,40,40)"]]'
            for i, n in enumerate(names)
        )
        return (
            f"<!doctype html><html><head><title>{html.escape(query)} - Google Search</title>"
            "</head><body><div id='islrg'></div>"
            "<script nonce='a'>window.google={kEI:'x1'};</script>"
            f"<script nonce='b'>AF_initDataCallback({{key: 'ds:1', hash: '2', data:"
            f'[null,[[["GRID_STATE0",null,[{items}]]]]], sideChannel: {{}}}});</script>'
            "</body></html>"
        ).encode()

    def _bing_page(self, names: list[str]) -> bytes:
        tiles = "".join(
            '<li><div class="iuscp"><div class="imgpt"><a class="iusc" m="'
            + html.escape(
                json.dumps(
                    {
                        "cid": f"c{i}",
                        "murl": self.url(n),
                        "turl": f"https://tse1.mm.bing.net/th?id=OIP.{i}",
                    },
                    separators=(",", ":"),
                )
            )
            + '" href="/images/search"><img class="mimg" src="data:,"></a></div></div></li>'
            for i, n in enumerate(names)
        )
        return f'<html><body><ul class="dgControl_list">{tiles}</ul></body></html>'.encode()

    def _image(self, h: BaseHTTPRequestHandler, name: str, count: int) -> None:
        b = self.images.get(name)
        if self.image_latency_s:
            time.sleep(self.image_latency_s)
        if b is None:
            self._send(h, 404, b"no such image", "text/plain")
        elif b.kind == "photo" or (b.kind == "flaky" and count > b.fail_times):
            assert b.path is not None
            self._send(h, 200, *self._cached(b.path))
        elif b.kind == "flaky":
            self._send(h, 503, b"try later", "text/plain")
        elif b.kind == "status":
            self._send(h, b.status, b"<html><body>error</body></html>", "text/html")
        elif b.kind == "slow":
            time.sleep(b.seconds)
            assert b.path is not None
            self._send(h, 200, *self._cached(b.path))
        elif b.kind == "html":
            # Hotlink protection: a 200 page where the image should be, under a .jpg URL.
            page = (
                b"<!DOCTYPE html><html><head><title>Access denied</title></head><body>"
                b"<p>Hotlinking is not allowed.</p></body></html>"
            )
            self._send(h, 200, page, "text/html; charset=utf-8")
        elif b.kind == "truncated":
            assert b.path is not None
            data = self._read(b.path)
            self._send(h, 200, data[: int(len(data) * b.keep_fraction)], "image/jpeg")
        elif b.kind == "empty":
            self._send(h, 200, b"", "image/jpeg")
        else:
            raise ValueError(b.kind)
