"""A store's web server in miniature, on loopback: a feed and its photos, and the ways such servers fail.

It answers conditional requests as a CDN does (ETag and Last-Modified, 304 when they match),
counts requests and full bodies per path, and can be changed while it runs (a photo's bytes, a
path that now fails). Started and stopped by the test, on a free port.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

LAST_MODIFIED = "Sat, 05 Dec 2026 12:00:00 GMT"


class QuietHTTPServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer is what some tests do on purpose (the job stops reading a feed
    past its size limit): no traceback for that; any other error is printed as usual."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0  # sleep this long before answering
    chunked: bool = False  # no Content-Length: the body streams


class FeedServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: Counter[str] = Counter()
        self.bodies: Counter[str] = Counter()  # 200s with a body
        self.lock = threading.Lock()
        self.stop_stalling = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.requests[path] += 1
                    route = server.routes.get(path)
                if route is None:
                    return self.answer(404, b"not found", "text/plain")
                if route.stall_s:
                    server.stop_stalling.wait(route.stall_s)
                if route.status == 200:
                    etag = '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"'
                    if self.headers.get("If-None-Match") == etag:
                        return self.answer(304, b"", route.content_type, {"ETag": etag})
                    with server.lock:
                        server.bodies[path] += 1
                    return self.answer(200, route.body, route.content_type,
                                       {"ETag": etag, "Last-Modified": LAST_MODIFIED, **route.headers}, route.chunked)
                return self.answer(route.status, route.body, route.content_type, route.headers)

            def answer(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None,
                       chunked: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for at in range(0, len(body), 65536):
                        piece = body[at:at + 65536]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

        self.http = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        if tls is not None:
            self.http.socket = tls.wrap_socket(self.http.socket, server_side=True)
        self.port = self.http.server_address[1]
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def photo(self, path: str, file: Path) -> str:
        self.routes[path] = Route(file.read_bytes())
        return self.url(path)

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bodies.clear()


@contextmanager
def feed_server(tls: ssl.SSLContext | None = None) -> Iterator[FeedServer]:
    server = FeedServer(tls)
    thread = threading.Thread(target=server.http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop_stalling.set()
        server.http.shutdown()
        server.http.server_close()
        thread.join(timeout=10)


# ---- the same products as an XML feed and as a TSV feed -----------------------------------------------------

FIELDS = ["id", "title", "description", "link", "image_link", "additional_image_link", "price", "sale_price",
          "sale_price_effective_date", "availability", "condition", "brand", "color", "material", "item_group_id",
          "product_type", "google_product_category"]


def as_xml(products: list[dict[str, object]]) -> bytes:
    items = []
    for product in products:
        lines = []
        for name in FIELDS:
            value = product.get(name)
            values = value if isinstance(value, list) else [value] if value else []
            tag = name if name in ("title", "link", "description") else f"g:{name}"
            lines += [f"      <{tag}>{escape(str(v))}</{tag}>" for v in values]
        items.append("    <item>\n" + "\n".join(lines) + "\n    </item>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">\n'
            "  <channel>\n    <title>Test store</title>\n" + "\n".join(items) + "\n  </channel>\n</rss>\n").encode()


def as_tsv(products: list[dict[str, object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(FIELDS)
    for product in products:
        row = []
        for name in FIELDS:
            value = product.get(name) or ""
            row.append(",".join(value) if isinstance(value, list) else str(value))
        writer.writerow(row)
    return out.getvalue().encode()
