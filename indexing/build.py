"""Build one index version from a catalogue folder, and publish it atomically.

Reading, hashing and decoding run on a pool of threads, a bounded window ahead of the forward
pass, so the network is never waiting for JPEGs and memory stays flat however big the catalogue
is. Only images whose bytes the embedding cache does not know go through the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import sqlite3
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from classifier_service.head import CategoryHead, cross_validated_accuracy
from classifier_service.model import EMBEDDING_DIM, Embedder
from classifier_service.preprocess import decode_image, to_model_input
from indexing.cache import CACHE_FILE, EmbeddingCache
from indexing.catalog import CatalogScan, Entry, Skipped, scan_catalog
from indexing.lock import exclusive
from indexing.progress import Progress
from indexing.versions import prune_versions
from lookalike.errors import ApiError
from lookalike.index_layout import (HEAD, INDEXES, ITEMS, MANIFEST, THUMBNAILS, CatalogItem, CategoryStats, HeadStats,
                                    IndexLayout, Manifest, index_file, new_version_name, read_items)
from similarity_service.catalog_index import CategoryIndex, check_index_type

log = logging.getLogger("lookalike.indexing")

THUMBNAIL_SIDE = 400
MAX_PIXELS = 60_000_000


class EmptyCatalog(RuntimeError):
    """No usable image in the catalogue folder."""


@dataclass
class BuildSummary:
    version: str
    version_dir: Path
    weights: str
    per_category: dict[str, int]
    skipped: list[Skipped]
    cv_accuracy: float | None
    folds: int
    seconds: float
    indexed: int
    embed_seconds: float
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    index_types: dict[str, str] = field(default_factory=dict)

    @property
    def changes(self) -> str:
        """The line a store manager reads first: what this run had to do."""
        return f"embedded {self.embedded}, reused {self.reused}, removed {self.removed}"


@dataclass(frozen=True)
class Prepared:
    """An image the network has not seen: its input and thumbnail, decoded once."""

    entry: Entry
    sha256: str
    model_input: np.ndarray
    thumbnail: bytes


@dataclass(frozen=True)
class Cached:
    """An image whose bytes this model already embedded: nothing to decode."""

    entry: Entry
    sha256: str


def prepare(root: Path, entry: Entry, embedder: Embedder, known: frozenset[str]) -> Prepared | Cached:
    """Read and hash the file; decode it only when the cache does not know its bytes."""
    data = (root / entry.file).read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 in known:
        return Cached(entry, sha256)
    prep = embedder.preprocessing
    image = decode_image(data, min_side=max(prep.resize, THUMBNAIL_SIDE), max_pixels=MAX_PIXELS)
    thumbnail = image.copy()
    thumbnail.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    thumbnail.save(buffer, "JPEG", quality=82, optimize=True)
    return Prepared(entry, sha256, to_model_input(image, prep), buffer.getvalue())


def prepared_in_order(scan: CatalogScan, embedder: Embedder, known: frozenset[str], workers: int, window: int,
                      skipped: list[Skipped]) -> Iterator[Prepared | Cached | Skipped]:
    """Read, hash and decode on `workers` threads, at most `window` images ahead, in catalogue order."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[tuple[Entry, Future[Prepared | Cached]]] = deque()
        for entry in scan.entries:
            pending.append((entry, pool.submit(prepare, scan.root, entry, embedder, known)))
            while len(pending) >= window or (pending and pending[0][1].done()):
                yield _settle(*pending.popleft(), skipped)
        while pending:
            yield _settle(*pending.popleft(), skipped)


def _settle(entry: Entry, future: Future[Prepared | Cached], skipped: list[Skipped]) -> Prepared | Cached | Skipped:
    try:
        return future.result()
    except ApiError as exc:
        reason = Skipped(entry.file, exc.message)
    except OSError as exc:
        reason = Skipped(entry.file, f"could not be read: {exc.strerror or exc}")
    skipped.append(reason)
    return reason


@dataclass
class Embedded:
    items: list[CatalogItem]
    vectors: np.ndarray
    embedded: int
    reused: int


def embed_catalog(scan: CatalogScan, embedder: Embedder, cache: EmbeddingCache, build_dir: Path, batch_size: int,
                  workers: int, skipped: list[Skipped], progress: Progress | None = None) -> Embedded:
    """Every readable image embedded or taken from the cache, its thumbnail written; items carry their Faiss labels.

    Each batch the network embeds is committed to the cache before the next one starts.
    """
    (build_dir / THUMBNAILS).mkdir()
    progress = progress or Progress(len(scan.entries))
    items: list[CatalogItem] = []
    rows: list[np.ndarray] = []
    batch: list[Prepared] = []
    counts = {"embedded": 0, "reused": 0}

    def add(entry: Entry, sha256: str, vector: np.ndarray, thumbnail: bytes) -> None:
        item = CatalogItem(label=len(items), id=entry.id, category=entry.category, name=entry.name, file=entry.file,
                           extra=entry.extra, sha256=sha256)
        (build_dir / item.thumbnail).write_bytes(thumbnail)
        items.append(item)
        rows.append(vector)

    def flush() -> None:
        vectors = embedder.embed_batch([p.model_input for p in batch])
        cache.put_batch([(p.sha256, v, p.thumbnail) for p, v in zip(batch, vectors)])
        for prepared, vector in zip(batch, vectors):
            add(prepared.entry, prepared.sha256, vector, prepared.thumbnail)
        counts["embedded"] += len(batch)
        progress.advance(embedded=len(batch))
        batch.clear()

    for result in prepared_in_order(scan, embedder, cache.known(), workers, window=batch_size * 4, skipped=skipped):
        if isinstance(result, Skipped):
            progress.advance(skipped=1)
        elif isinstance(result, Cached):
            hit = cache.get(result.sha256)
            if hit is None:  # only if the cache file was swapped underneath us; say so rather than guess
                skipped.append(Skipped(result.entry.file, "its cached embedding vanished; run the job again"))
                progress.advance(skipped=1)
                continue
            add(result.entry, result.sha256, *hit)
            counts["reused"] += 1
            progress.advance(reused=1)
        else:
            batch.append(result)
            if len(batch) == batch_size:
                flush()
    if batch:
        flush()
    progress.close()
    vectors = np.stack(rows) if rows else np.zeros((0, EMBEDDING_DIM), np.float32)
    return Embedded(items, vectors, counts["embedded"], counts["reused"])


def forget_departed(cache: EmbeddingCache, items: list[CatalogItem]) -> None:
    """Drop cached embeddings the published catalogue no longer holds; a failure here only costs disk."""
    try:
        forgotten = cache.retain({i.sha256 for i in items if i.sha256})
    except sqlite3.Error as exc:
        log.warning("could not prune the embedding cache (%s); the new index is published all the same", exc)
        return
    if forgotten:
        log.info("embedding cache: forgot %d photos no longer in the catalogue", forgotten)


def removed_since(previous: Path | None, items: list[CatalogItem]) -> int:
    """Images the serving version had that this one has not, by content (a rename removes nothing)."""
    if previous is None:
        return 0
    before = read_items(previous)
    if all(i.sha256 for i in before):
        return sum((Counter(i.sha256 for i in before) - Counter(i.sha256 for i in items)).values())
    return len({i.file for i in before} - {i.file for i in items})  # a version built before hashes were kept


def clear_abandoned_builds(layout: IndexLayout) -> None:
    """A killed run leaves a hidden build folder behind; under the lock, nobody else is using it."""
    for path in layout.versions.glob(".build-*") if layout.versions.is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)
    for link in layout.root.glob(".current-*"):
        link.unlink(missing_ok=True)


def build_index(catalog: Path, index_root: Path, weights: str = "auto", *, precision: str = "auto",
                batch_size: int = 16, workers: int = 2, index_type: str = "Flat", keep: int | None = None,
                embedder: Embedder | None = None, progress: Progress | None = None) -> BuildSummary:
    """Scan, embed what the cache lacks, fit the head, write a hidden build folder, publish it, prune old versions.

    Holds the index root's lock throughout, so two jobs never build at once.
    """
    started = time.perf_counter()
    scan = scan_catalog(catalog)
    if not scan.entries:
        raise EmptyCatalog(
            f"No images found in {catalog}. Put photos in {catalog}/<category>/, one folder per category "
            "(e.g. chair/, lamp/), then run the indexing job again.")
    check_index_type(index_type, EMBEDDING_DIM)
    embedder = embedder or Embedder(weights, precision)
    layout = IndexLayout(index_root)
    with exclusive(layout.root):
        clear_abandoned_builds(layout)
        previous = layout.current()
        cache = EmbeddingCache(layout.root / CACHE_FILE, embedder.info.model_id)
        build_dir = layout.begin_build()
        try:
            skipped = list(scan.skipped)
            embed_started = time.perf_counter()
            done = embed_catalog(scan, embedder, cache, build_dir, batch_size, workers, skipped, progress)
            embed_seconds = time.perf_counter() - embed_started
            items, vectors = done.items, done.vectors
            if not items:
                raise EmptyCatalog(f"None of the {len(scan.entries)} images in {catalog} could be read.")
            categories = sorted({i.category for i in items})
            labels = np.array([categories.index(i.category) for i in items])
            accuracy, folds = cross_validated_accuracy(vectors, labels, categories)
            CategoryHead.fit(vectors, labels, categories).save(build_dir / HEAD)
            (build_dir / INDEXES).mkdir()
            stats = []
            for name in categories:
                members = labels == categories.index(name)
                built = CategoryIndex.build(vectors[members], np.flatnonzero(members), index_type)
                built.save(index_file(build_dir, name))
                stats.append(CategoryStats(name=name, items=len(built), index_type=built.factory,
                                           search_parameters=built.search_parameters))
            per_category = {c.name: c.items for c in stats}
            index_types = {c.name: c.index_type for c in stats}
            (build_dir / ITEMS).write_text(json.dumps([i.model_dump() for i in items], ensure_ascii=False))
            version = new_version_name()
            manifest = Manifest(
                version=version, created_at=datetime.now(timezone.utc), model=embedder.info,
                preprocessing=embedder.preprocessing, embedding_dim=int(vectors.shape[1]), index_type=index_type,
                categories=stats,
                head=HeadStats(cv_accuracy=accuracy, folds=folds, train_items=len(items)),
                catalog=str(catalog),
            )
            (build_dir / MANIFEST).write_text(manifest.model_dump_json(indent=2))
            final = layout.publish(build_dir, version)
            forget_departed(cache, items)
        except BaseException:
            shutil.rmtree(build_dir, ignore_errors=True)
            raise
        finally:
            cache.close()
        removed = removed_since(previous, items)
        if keep is not None:
            prune_versions(layout, keep)
    return BuildSummary(version=version, version_dir=final, weights=embedder.info.weights, per_category=per_category,
                        skipped=skipped, cv_accuracy=accuracy, folds=folds, indexed=len(items),
                        seconds=time.perf_counter() - started, embed_seconds=embed_seconds,
                        embedded=done.embedded, reused=done.reused, removed=removed, index_types=index_types)
