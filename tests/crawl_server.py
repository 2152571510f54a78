"""A local stand-in for image search engines, on 127.0.0.1, for the crawl tests and benchmark.

It serves result pages in the formats icrawler's parsers read, so the real parsers run on them:

* Google: ``/google/search?q=..&ijn=N`` -> an HTML page whose ``<script>`` holds the image URLs
  in an ``AF_initDataCallback`` data array (GoogleParser's regex reads URLs from scripts);
* Bing: ``/bing/images/async?q=..&first=N`` -> ``div.imgpt > a[m]`` tiles whose ``m`` attribute
  is HTML-escaped JSON with ``murl`` (BingParser);
* Baidu: ``/baidu/search/acjson?word=..&pn=N&rn=30`` -> JSON ``{"data": [{"replaceUrl": ..}]}``,
  only with the cookie its home page ``/baidu/`` sets (else ``antiFlag``, as Baidu does);
* Commons: ``/commons/w/api.php`` -> ``formatversion=2`` imageinfo answers with licence
  metadata, for ``generator=categorymembers`` (files and subcategories) and ``generator=search``,
  paged through ``continue``;
* Openverse: ``/openverse/v1/images/?q=..&page=N&page_size=M`` -> results with licences.

Any engine can instead *replay* a recorded answer (``replay``): the body of a real page from
``../shared/fixtures/crawl`` for every request of that engine (or of one path).

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

PAGE_SIZE = {"google": 100, "bing": 35, "baidu": 30, "commons": 50, "openverse": 20}
ENGINES = ("commons", "openverse", "bing", "google", "baidu", "duckduckgo")


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
        self.replays: dict[tuple[str, str | None], tuple[int, bytes, str]] = {}
        self.subcategories: dict[str, list[str]] = {}
        self.licenses: dict[str, tuple[str, str, str]] = {}  # image name -> (licence, url, author)
        self.commons_lag = 0  # answer this many Commons requests with a maxlag error first
        self.hits: Counter[str] = Counter()
        self.page_requests: list[str] = []
        self.agents: dict[str, set[str]] = {}  # path prefix (engine or "img") -> User-Agents
        self.languages: dict[str, set[str]] = {}  # path prefix -> Accept-Language headers
        self.page_size = dict(PAGE_SIZE)
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
        return {engine: f"{self.base}/{engine}" for engine in ENGINES}

    def replay(
        self,
        engine: str,
        body: bytes,
        status: int = 200,
        content_type: str = "text/html; charset=utf-8",
        path: str | None = None,
    ) -> None:
        """Answer every request of ``engine`` (or of one ``path`` under it) with ``body``."""
        self.replays[(engine, path)] = (status, body, content_type)

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

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        with self._lock:
            self.hits[parts.path] += 1
            count = self.hits[parts.path]
            prefix = parts.path.strip("/").split("/")[0]
            self.agents.setdefault(prefix, set()).add(h.headers.get("User-Agent", ""))
            self.languages.setdefault(prefix, set()).add(h.headers.get("Accept-Language", ""))
        if parts.path.startswith("/img/"):
            self._image(h, parts.path[len("/img/") : -len(".jpg")], count)
            return
        engine = parts.path.strip("/").split("/")[0]
        with self._lock:
            self.page_requests.append(h.path)
        sub_path = parts.path[len(engine) + 1 :] or "/"
        replay = self.replays.get((engine, sub_path)) or self.replays.get((engine, None))
        if replay is not None:
            self._send(h, replay[0], replay[1], replay[2])
            return
        if engine in self.page_status:
            self._send(h, self.page_status[engine], b"<html>busy</html>", "text/html")
            return
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if engine == "baidu" and sub_path == "/":
            h.send_response(200)
            h.send_header("Set-Cookie", "BAIDUID=local-test; Path=/")
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", "13")
            h.end_headers()
            h.wfile.write(b"<html></html>")
            return
        if engine == "commons" and self.commons_lag > 0:
            self.commons_lag -= 1
            error = {"error": {"code": "maxlag", "info": "Waiting for a database server: 6 s"}}
            body = json.dumps(error).encode()
            self._send(h, 200, body, "application/json", {"Retry-After": "0.2"})
        elif engine == "commons":
            self._send(h, 200, self._commons(params), "application/json")
        elif engine == "openverse":
            self._send(h, 200, self._openverse(params), "application/json")
        elif engine == "google":
            start = int(params.get("ijn", "0")) * PAGE_SIZE["google"]
            names = self._page(engine, params.get("q", ""), start)
            self._send(h, 200, self._google_page(params.get("q", ""), names), "text/html")
        elif engine == "bing":
            first, count = int(params.get("first", "0")), int(params.get("count", "35"))
            names = self._page(engine, params.get("q", ""), first, count)
            self._send(h, 200, self._bing_page(names), "text/html")
        elif engine == "baidu":
            if "BAIDUID" not in (h.headers.get("Cookie") or ""):
                body = json.dumps({"antiFlag": 1, "message": "Forbid spider access"})
                self._send(h, 200, body.encode(), "application/json")
                return
            names = self._page(engine, params.get("word", ""), int(params.get("pn", "0")))
            body = json.dumps(
                {
                    "queryEnc": params.get("word", ""),
                    "data": [
                        {"objURL": "ippr_z2C$q", "replaceUrl": [{"ObjURL": self.url(n)}]}
                        for n in names
                    ]
                    + [{}],
                }
            )
            self._send(h, 200, body.encode(), "application/json")
        else:
            self._send(h, 404, b"not found", "text/plain")

    def _page(self, engine: str, query: str, start: int, size: int | None = None) -> list[str]:
        if engine in self.empty_engines:
            return []
        return self.results.get((engine, query), [])[
            start : start + (size or self.page_size[engine])
        ]

    def _credit(self, name: str) -> tuple[str, str, str]:
        return self.licenses.get(
            name, ("CC BY-SA 4.0", "https://creativecommons.org/licenses/by-sa/4.0", "A. Author")
        )

    def _commons(self, params: dict[str, str]) -> bytes:
        key = params.get("gcmtitle") or params.get("gsrsearch", "")
        start = int(params.get("gcmcontinue") or params.get("gsroffset") or 0)
        names = self._page("commons", key, start)
        pages: list[dict] = [
            {"ns": 14, "title": sub}
            for sub in (self.subcategories.get(key, []) if not start else [])
        ]
        for n in names:
            licence, licence_url, author = self._credit(n)
            meta = {
                "LicenseShortName": {"value": licence},
                "Artist": {"value": f"<a href='//commons.wikimedia.org/wiki/User:X'>{author}</a>"},
            }
            if licence_url:
                meta["LicenseUrl"] = {"value": licence_url}
            pages.append(
                {
                    "ns": 6,
                    "title": f"File:{n}.jpg",
                    "imageinfo": [
                        {
                            "url": self.url(n),
                            "descriptionurl": f"https://commons.wikimedia.org/wiki/File:{n}.jpg",
                            "mime": "image/jpeg",
                            "extmetadata": meta,
                        }
                    ],
                }
            )
        answer: dict = {"batchcomplete": True, "query": {"pages": pages}}
        total = len(self.results.get(("commons", key), []))
        if start + self.page_size["commons"] < total:
            cont = str(start + self.page_size["commons"])
            answer["continue"] = {"gcmcontinue": cont, "continue": "gcmcontinue||"}
        return json.dumps(answer).encode()

    def _openverse(self, params: dict[str, str]) -> bytes:
        size = int(params.get("page_size", "20"))
        start = (int(params.get("page", "1")) - 1) * size
        names = self._page("openverse", params.get("q", ""), start, size)
        results = []
        for n in names:
            licence, licence_url, author = self._credit(n)
            code = licence.lower().replace("cc ", "").split()[0] if licence else None
            results.append(
                {
                    "url": self.url(n),
                    "foreign_landing_url": f"https://www.flickr.com/photos/x/{n}",
                    "creator": author,
                    "license": code,
                    "license_version": licence.split()[-1] if licence else None,
                    "license_url": licence_url,
                    "title": n,
                }
            )
        return json.dumps({"result_count": len(results), "results": results}).encode()

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
