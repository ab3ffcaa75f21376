"""The feed's photos on local disk, kept between runs so a nightly re-index fetches only what changed.

    <root>/photos.sqlite                    url -> file, sha256, ETag, Last-Modified
    <root>/photos/<sha[:2]>/<sha256>.<ext>  each distinct photo once, by content

A photo is kept only once Pillow has decoded it: never on the word of its extension or its
Content-Type. A run asks each URL with the validators from the last one: a 304 keeps the file,
a failure with a file on disk uses that file and says so, a failure without one fails the photo.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from lookalike.errors import ImageRejected
from lookalike.feed.download import Downloader, DownloadFailed
from lookalike.job_database import open_job_database, retaining
from lookalike.settings import MAX_PIXELS
from lookalike.vision.preprocess import decode_image

log = logging.getLogger("lookalike.feed")

DATABASE = "photos.sqlite"
PHOTOS = "photos"
SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    url TEXT PRIMARY KEY, file TEXT NOT NULL, sha256 TEXT NOT NULL, etag TEXT, last_modified TEXT
) WITHOUT ROWID;
"""
SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
            "TIFF": ".tif", "HEIF": ".heic"}


@dataclass(frozen=True)
class CachedPhoto:
    url: str
    file: str  # relative to the cache root
    sha256: str
    etag: str | None
    last_modified: str | None


class PhotoCache:
    """One folder and one SQLite file; used from the job's one thread (its event loop)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / PHOTOS).mkdir(parents=True, exist_ok=True)
        self.db = open_job_database(self.root / DATABASE, SCHEMA)

    def lookup(self, url: str) -> CachedPhoto | None:
        """What the last run kept for `url`, if its file is still there."""
        row = self.db.execute("SELECT file, sha256, etag, last_modified FROM photos WHERE url = ?", (url,)).fetchone()
        if row is None or not (self.root / row[0]).is_file():
            return None
        return CachedPhoto(url, row[0], row[1], row[2], row[3])

    def store(self, url: str, body: bytes, suffix: str, etag: str | None, last_modified: str | None) -> CachedPhoto:
        sha256 = hashlib.sha256(body).hexdigest()
        relative = f"{PHOTOS}/{sha256[:2]}/{sha256}{suffix}"
        path = self.root / relative
        if not path.is_file():
            path.parent.mkdir(exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.part")
            partial.write_bytes(body)
            partial.replace(path)  # a photo file is whole or absent
        photo = CachedPhoto(url, relative, sha256, etag, last_modified)
        self.remember(photo)
        return photo

    def remember(self, photo: CachedPhoto) -> None:
        self.db.execute("INSERT OR REPLACE INTO photos (url, file, sha256, etag, last_modified) VALUES (?, ?, ?, ?, ?)",
                        (photo.url, photo.file, photo.sha256, photo.etag, photo.last_modified))

    def retain(self, urls: Iterable[str]) -> int:
        """Forget every URL but `urls` (the feed just published), and delete the files nothing refers to."""
        with retaining(self.db, urls):
            self.db.execute("DELETE FROM photos WHERE url NOT IN (SELECT key FROM retained)")
        kept = {file for (file,) in self.db.execute("SELECT file FROM photos")}
        deleted = 0
        for path in (self.root / PHOTOS).glob("*/*"):
            if path.relative_to(self.root).as_posix() not in kept:
                path.unlink(missing_ok=True)
                deleted += 1
        return deleted

    def close(self) -> None:
        self.db.close()


def photo_suffix(data: bytes) -> str:
    """The file suffix of a photo that decodes whole, as the indexing job will decode it; ImageRejected if not."""
    decode_image(data, min_side=224, max_pixels=MAX_PIXELS)
    with Image.open(io.BytesIO(data)) as image:
        return SUFFIXES.get(image.format or "", ".img")


@dataclass
class PhotoResult:
    url: str
    photo: CachedPhoto | None  # None: failed, and nothing cached to fall back on
    how: str  # downloaded, not_modified, from_cache, failed
    reason: str = ""  # why it failed (also for from_cache: why the cached copy was used)


@dataclass
class PhotoCounts:
    downloaded: int = 0
    not_modified: int = 0
    from_cache: int = 0
    failed: int = 0
    bytes_fetched: int = 0
    warnings: list[str] = field(default_factory=list)


async def fetch_photo(url: str, cache: PhotoCache, downloader: Downloader) -> PhotoResult:
    """Download (or revalidate) one photo and keep it if it decodes; fall back on the cached copy if not."""
    cached = cache.lookup(url)
    try:
        got = await downloader.get(url, etag=cached.etag if cached else None,
                                   last_modified=cached.last_modified if cached else None)
        if got.body is None:
            if cached is None:  # the downloader refuses a 304 to a request without validators; never here
                raise DownloadFailed("HTTP 304 to a request that asked for no comparison")
            if got.etag != cached.etag or got.last_modified != cached.last_modified:
                cache.remember(CachedPhoto(url, cached.file, cached.sha256, got.etag, got.last_modified))
            return PhotoResult(url, cached, "not_modified")
        try:
            suffix = await asyncio.to_thread(photo_suffix, got.body)
        except ImageRejected as exc:
            raise DownloadFailed(f"not a usable image: {exc.message}") from None
        return PhotoResult(url, cache.store(url, got.body, suffix, got.etag, got.last_modified), "downloaded")
    except DownloadFailed as exc:
        if cached is not None:
            return PhotoResult(url, cached, "from_cache", exc.reason)
        return PhotoResult(url, None, "failed", exc.reason)


async def fetch_photos(urls: list[str], cache: PhotoCache, downloader: Downloader,
                       interval_s: float = 5.0) -> tuple[dict[str, PhotoResult], PhotoCounts]:
    """Every URL once, `downloader.limits.concurrency` at a time; a progress line every `interval_s`."""
    queue = list(dict.fromkeys(urls))
    results: dict[str, PhotoResult] = {}
    counts = PhotoCounts()
    started = last = time.perf_counter()

    async def worker() -> None:
        nonlocal last
        while queue:
            url = queue.pop()
            result = results[url] = await fetch_photo(url, cache, downloader)
            setattr(counts, result.how, getattr(counts, result.how) + 1)
            if result.how == "from_cache":
                counts.warnings.append(f"{url}: {result.reason}; using the copy from the last run")
            now = time.perf_counter()
            if now - last >= interval_s:
                last = now
                log.info("photos: %d of %d (downloaded %d, not modified %d, from cache %d, failed %d), %.1f/s",
                         len(results), len(results) + len(queue), counts.downloaded, counts.not_modified,
                         counts.from_cache, counts.failed, len(results) / (now - started))

    await asyncio.gather(*(worker() for _ in range(max(1, min(downloader.limits.concurrency, len(queue))))))
    counts.bytes_fetched = downloader.bytes_fetched
    log.info("photos: %d (downloaded %d, not modified %d, from cache %d, failed %d), %d bytes fetched",
             len(results), counts.downloaded, counts.not_modified, counts.from_cache, counts.failed,
             counts.bytes_fetched)
    return results, counts
