"""The `<lookalike-search>` widget's scripts, read once and gzipped once, served with an ETag.

`/widget.js` is the address stores paste into their pages, so it cannot change: it is cached for
a few minutes and then revalidated by its ETag (a 304 costs a few bytes). What it loads on the
first open, the dialog, is named by its content's hash (`/widget/dialog.<hash>.js`), so it is
cached for a year: a new version is a new address, written into `/widget.js` here.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.datastructures import Headers
from starlette.responses import Response

WIDGET_SOURCES: Final = Path(__file__).parent / "static" / "widget"
ENTRY: Final = "widget.js"
DIALOG: Final = "dialog.js"
ENTRY_CACHE: Final = "public, max-age=300"
HASHED_CACHE: Final = "public, max-age=31536000, immutable"
JAVASCRIPT: Final = "text/javascript; charset=utf-8"


@dataclass(frozen=True)
class Asset:
    """One script, as sent: its bytes, gzipped beforehand (Brotli would need a library; gzip is in every browser)."""

    body: bytes
    gzipped: bytes
    etag: str
    cache_control: str

    @classmethod
    def of(cls, body: bytes, cache_control: str) -> Asset:
        return cls(body, gzip.compress(body, compresslevel=9, mtime=0),
                   f'"{hashlib.sha256(body).hexdigest()[:20]}"', cache_control)

    def response(self, headers: Headers) -> Response:
        """200 with the gzipped bytes when the browser takes them, or 304 when its copy is this one."""
        common = {"ETag": self.etag, "Cache-Control": self.cache_control, "Vary": "Accept-Encoding",
                  "X-Content-Type-Options": "nosniff"}
        if self.etag in {tag.strip().removeprefix("W/") for tag in headers.get("if-none-match", "").split(",")}:
            return Response(status_code=304, headers=common)
        if "gzip" in headers.get("accept-encoding", ""):
            return Response(self.gzipped, media_type=JAVASCRIPT, headers={**common, "Content-Encoding": "gzip"})
        return Response(self.body, media_type=JAVASCRIPT, headers=common)


@dataclass(frozen=True)
class WidgetAssets:
    entry: Asset
    chunks: dict[str, Asset]  # file name under /widget/ -> the script

    @classmethod
    def load(cls, sources: Path = WIDGET_SOURCES) -> WidgetAssets:
        """Read the scripts; the entry's reference to the dialog becomes the dialog's hashed name."""
        dialog = (sources / DIALOG).read_bytes()
        hashed = f"dialog.{hashlib.sha256(dialog).hexdigest()[:12]}.js"
        entry = (sources / ENTRY).read_bytes()
        reference = f'"./widget/{DIALOG}"'.encode()
        if reference not in entry:
            raise RuntimeError(f"{ENTRY} must import its dialog as {reference.decode()}")
        entry = entry.replace(reference, f'"./widget/{hashed}"'.encode())
        return cls(Asset.of(entry, ENTRY_CACHE), {hashed: Asset.of(dialog, HASHED_CACHE)})

    def all(self) -> list[Asset]:
        return [self.entry, *self.chunks.values()]
