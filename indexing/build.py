"""Build one index version from a catalogue folder, and publish it atomically.

Decoding runs on a pool of threads, a bounded window ahead of the forward pass, so the
network is never waiting for JPEGs and memory stays flat however big the catalogue is.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from classifier_service.head import CategoryHead, cross_validated_accuracy
from classifier_service.model import EMBEDDING_DIM, Embedder
from classifier_service.preprocess import decode_image, to_model_input
from indexing.catalog import CatalogScan, Entry, Skipped, scan_catalog
from lookalike.errors import ApiError
from lookalike.index_layout import (HEAD, INDEXES, ITEMS, MANIFEST, THUMBNAILS, CatalogItem, CategoryStats, HeadStats,
                                    IndexLayout, Manifest, index_file, new_version_name)
from similarity_service.catalog_index import CategoryIndex

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
    embedded: int
    embed_seconds: float


@dataclass(frozen=True)
class Prepared:
    entry: Entry
    model_input: np.ndarray
    thumbnail: bytes


def prepare(root: Path, entry: Entry, embedder: Embedder) -> Prepared:
    """Decode once; make both the network's input and the web page's thumbnail from it."""
    data = (root / entry.file).read_bytes()
    prep = embedder.preprocessing
    image = decode_image(data, min_side=max(prep.resize, THUMBNAIL_SIDE), max_pixels=MAX_PIXELS)
    thumbnail = image.copy()
    thumbnail.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    thumbnail.save(buffer, "JPEG", quality=82, optimize=True)
    return Prepared(entry, to_model_input(image, prep), buffer.getvalue())


def prepared_in_order(scan: CatalogScan, embedder: Embedder, workers: int, window: int,
                      skipped: list[Skipped]) -> Iterator[Prepared]:
    """Decode on `workers` threads, at most `window` images ahead; failures go to `skipped`."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[tuple[Entry, Future[Prepared]]] = deque()
        for entry in scan.entries:
            pending.append((entry, pool.submit(prepare, scan.root, entry, embedder)))
            while len(pending) >= window or (pending and pending[0][1].done()):
                yield from _settle(*pending.popleft(), skipped)
        while pending:
            yield from _settle(*pending.popleft(), skipped)


def _settle(entry: Entry, future: Future[Prepared], skipped: list[Skipped]) -> Iterator[Prepared]:
    try:
        yield future.result()
    except ApiError as exc:
        skipped.append(Skipped(entry.file, exc.message))
    except OSError as exc:
        skipped.append(Skipped(entry.file, f"could not be read: {exc.strerror or exc}"))


def embed_catalog(scan: CatalogScan, embedder: Embedder, build_dir: Path, batch_size: int, workers: int,
                  skipped: list[Skipped]) -> tuple[list[CatalogItem], np.ndarray]:
    """Every readable image embedded, its thumbnail written; items carry their Faiss labels."""
    (build_dir / THUMBNAILS).mkdir()
    items: list[CatalogItem] = []
    chunks: list[np.ndarray] = []
    batch: list[Prepared] = []

    def flush() -> None:
        chunks.append(embedder.embed_batch([p.model_input for p in batch]))
        for prepared in batch:
            e = prepared.entry
            item = CatalogItem(label=len(items), id=e.id, category=e.category, name=e.name, file=e.file, extra=e.extra)
            (build_dir / item.thumbnail).write_bytes(prepared.thumbnail)
            items.append(item)
        log.info("embedded %d of %d images", len(items), len(scan.entries))
        batch.clear()

    for prepared in prepared_in_order(scan, embedder, workers, window=batch_size * 4, skipped=skipped):
        batch.append(prepared)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return items, (np.concatenate(chunks) if chunks else np.zeros((0, EMBEDDING_DIM), np.float32))


def build_index(catalog: Path, index_root: Path, weights: str = "auto", *, precision: str = "auto",
                batch_size: int = 16, workers: int = 2, index_type: str = "Flat",
                embedder: Embedder | None = None) -> BuildSummary:
    """Scan, embed, fit the head, write every file into a hidden build folder, then publish it."""
    started = time.perf_counter()
    scan = scan_catalog(catalog)
    if not scan.entries:
        raise EmptyCatalog(
            f"No images found in {catalog}. Put photos in {catalog}/<category>/, one folder per category "
            "(e.g. chair/, lamp/), then run the indexing job again.")
    embedder = embedder or Embedder(weights, precision)
    layout = IndexLayout(index_root)
    build_dir = layout.begin_build()
    try:
        skipped = list(scan.skipped)
        embed_started = time.perf_counter()
        items, vectors = embed_catalog(scan, embedder, build_dir, batch_size, workers, skipped)
        embed_seconds = time.perf_counter() - embed_started
        if not items:
            raise EmptyCatalog(f"None of the {len(scan.entries)} images in {catalog} could be read.")
        categories = sorted({i.category for i in items})
        labels = np.array([categories.index(i.category) for i in items])
        accuracy, folds = cross_validated_accuracy(vectors, labels, categories)
        CategoryHead.fit(vectors, labels, categories).save(build_dir / HEAD)
        (build_dir / INDEXES).mkdir()
        per_category = {}
        for name in categories:
            members = labels == categories.index(name)
            CategoryIndex.build(vectors[members], np.flatnonzero(members), index_type).save(index_file(build_dir, name))
            per_category[name] = int(members.sum())
        (build_dir / ITEMS).write_text(json.dumps([i.model_dump() for i in items], ensure_ascii=False))
        version = new_version_name()
        manifest = Manifest(
            version=version, created_at=datetime.now(timezone.utc), model=embedder.info,
            preprocessing=embedder.preprocessing, embedding_dim=int(vectors.shape[1]), index_type=index_type,
            categories=[CategoryStats(name=n, items=c) for n, c in per_category.items()],
            head=HeadStats(cv_accuracy=accuracy, folds=folds, train_items=len(items)),
            catalog=str(catalog),
        )
        (build_dir / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        final = layout.publish(build_dir, version)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    return BuildSummary(version=version, version_dir=final, weights=embedder.info.weights, per_category=per_category,
                        skipped=skipped, cv_accuracy=accuracy, folds=folds, embedded=len(items),
                        seconds=time.perf_counter() - started, embed_seconds=embed_seconds)
