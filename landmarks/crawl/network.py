"""A quick check that some engine host answers, before a crawl starts."""

from __future__ import annotations

import concurrent.futures
import socket
from urllib.parse import urlsplit

from landmarks.crawl.options import DEFAULT_BASE_URLS, NetworkUnavailable


def _host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def _connect(base_url: str, timeout: float) -> None:
    with socket.create_connection(_host_port(base_url), timeout=timeout):
        pass


def check_network(
    engines: tuple[str, ...], timeout: float, endpoints: dict[str, str] | None = None
) -> None:
    """Raise :class:`NetworkUnavailable` quickly when no engine host answers.

    ``endpoints`` maps an engine to the base URL it is crawled from (default: the engine's own
    site).
    """
    bases = {e: (endpoints or {}).get(e, DEFAULT_BASE_URLS[e]) for e in engines}
    errors = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(engines))) as pool:
        futures = {pool.submit(_connect, bases[e], timeout): e for e in engines}
        done, _ = concurrent.futures.wait(futures, timeout=timeout + 1)
        for future, engine in futures.items():
            if future in done and future.exception() is None:
                return
            exc = future.exception() if future in done else TimeoutError("no answer")
            errors.append(f"{engine} ({urlsplit(bases[engine]).netloc}): {exc}")
    raise NetworkUnavailable(
        "cannot reach any image search engine: "
        + "; ".join(errors)
        + ". To run offline, import a local folder laid out as DIR/<class>/<images>: "
        "`landmarks run --source DIR` or `make run SOURCE=DIR`."
    )
