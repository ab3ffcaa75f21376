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
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from indexing.cache import CACHE_FILE, EmbeddingCache, TextVectorCache
from indexing.catalog import CatalogScan, Entry, Skipped, scan_catalog
from indexing.imagenet_tags import Tags, top_tags, writes_tags
from indexing.lock import exclusive
from indexing.network_export import (
    Int8Options,
    choose_catalogue_model,
    compatibility,
    export_catalogue_network,
    write_served_graphs,
)
from indexing.progress import Progress
from indexing.self_eval import DEFAULT_MARGIN, publish_gate, self_evaluate
from indexing.versions import prune_versions
from lookalike.catalog import milvus_store
from lookalike.catalog.index import CategoryIndex, check_index_type
from lookalike.catalog.layout import (
    HEAD,
    INDEXES,
    ITEMS,
    MANIFEST,
    SYNONYMS,
    TEXT_INDEX,
    TEXT_VECTORS,
    THUMBNAILS,
    IndexLayout,
    index_file,
    new_version_name,
    read_items,
    read_manifest,
)
from lookalike.catalog.manifest import CatalogItem, CategoryStats, HeadStats, Manifest, ProjectionInfo, SelfEval
from lookalike.catalog.projection import PROJECTION, Projection, Reduction
from lookalike.catalog.synonyms import Synonyms
from lookalike.catalog.text_embedding import TextEmbedder, item_text, load_text_model, text_sha256
from lookalike.catalog.text_index import DEFAULT_EXCLUDED, TextField, text_fields, write_text_index
from lookalike.catalog.vector_store import VectorStoreRecord
from lookalike.contracts import GateFigures, Precision, PrecisionSetting, TextModelInfo
from lookalike.errors import EmptyCatalog, ImageRejected, VectorStoreFailed, VectorStoreUnavailable
from lookalike.settings import MAX_PIXELS, VectorStoreSettings
from lookalike.vision.embedder import Embedder
from lookalike.vision.head_training import cross_validated_accuracy, fit_head
from lookalike.vision.network import EMBEDDING_DIM, imagenet_classes
from lookalike.vision.onnx_engine import OnnxEmbedder
from lookalike.vision.preprocess import decode_image, to_model_input

log = logging.getLogger("lookalike.indexing")

THUMBNAIL_SIDE = 400

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
    disagreements: list[Skipped] = field(default_factory=list)  # photo rows whose columns differ from the product's
    text_fields: list[TextField] = field(default_factory=list)
    tagged: int | None = None  # photos with ImageNet tags; None: skipped, the weights know no ImageNet classes
    synonyms: str = "default"
    precision: Precision = "fp32"
    precision_reason: str = ""
    int8_gate: GateFigures | None = None
    warnings: list[str] = field(default_factory=list)
    text_model: TextModelInfo | None = None  # None: TEXT_MODEL=none, words searched by bm25 alone
    text_embedded: int = 0
    text_reused: int = 0
    reduce: str = "none"
    index_dim: int = EMBEDDING_DIM
    self_eval: SelfEval | None = None
    gate: str = ""

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


CatalogueEmbedder = OnnxEmbedder


def prepare(root: Path, entry: Entry, embedder: CatalogueEmbedder, known: frozenset[str]) -> Prepared | Cached:
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


def prepared_in_order(scan: CatalogScan, embedder: CatalogueEmbedder, known: frozenset[str], workers: int, window: int,
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
    except ImageRejected as exc:
        reason = Skipped(entry.file, exc.message)
    except OSError as exc:
        reason = Skipped(entry.file, f"could not be read: {exc.strerror or exc}")
    skipped.append(reason)
    return reason


@dataclass
class EmbeddedCatalog:
    """The catalogue's readable photos with their Faiss labels and vectors, and how many the network ran on."""

    items: list[CatalogItem]
    vectors: np.ndarray
    embedded: int
    reused: int
    tags: dict[int, Tags] = field(default_factory=dict)  # by label; empty unless the weights are ImageNet's


def embed_catalog(scan: CatalogScan, embedder: CatalogueEmbedder, cache: EmbeddingCache, build_dir: Path, batch_size: int,
                  workers: int, skipped: list[Skipped], progress: Progress | None = None) -> EmbeddedCatalog:
    """Every readable image embedded or taken from the cache, its thumbnail written; items carry their Faiss labels.

    Each batch the network embeds is committed to the cache before the next one starts.
    """
    (build_dir / THUMBNAILS).mkdir()
    progress = progress or Progress(len(scan.entries))
    items: list[CatalogItem] = []
    rows: list[np.ndarray] = []
    batch: list[Prepared] = []
    counts = {"embedded": 0, "reused": 0}
    classes = imagenet_classes() if writes_tags(embedder.info.weights) else None
    tags: dict[int, Tags] = {}

    def add(entry: Entry, sha256: str, vector: np.ndarray, thumbnail: bytes, found: Tags | None) -> None:
        item = CatalogItem(label=len(items), id=entry.id, category=entry.category, name=entry.name, file=entry.file,
                           extra=entry.extra, sha256=sha256, group_id=entry.group)
        (build_dir / item.thumbnail).write_bytes(thumbnail)
        if found:
            tags[item.label] = found
        items.append(item)
        rows.append(vector)

    def flush() -> None:
        inputs = [p.model_input for p in batch]
        if classes is None:
            vectors, found = embedder.embed_batch(inputs), None
        else:  # the same forward pass, its ImageNet layer kept
            vectors, probabilities = embedder.embed_with_imagenet(inputs)
            found = top_tags(probabilities, classes)
        cache.put_batch([(p.sha256, v, p.thumbnail) for p, v in zip(batch, vectors)], found)
        for at, (prepared, vector) in enumerate(zip(batch, vectors)):
            add(prepared.entry, prepared.sha256, vector, prepared.thumbnail, found[at] if found else None)
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
            add(result.entry, result.sha256, *hit, cache.get_tags(result.sha256) if classes is not None else None)
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
    return EmbeddedCatalog(items, vectors, counts["embedded"], counts["reused"], tags)


def forget_departed(cache: EmbeddingCache, items: list[CatalogItem]) -> None:
    """Drop cached embeddings the published catalogue no longer holds; a failure here only costs disk."""
    try:
        forgotten = cache.retain({i.sha256 for i in items if i.sha256})
    except sqlite3.Error as exc:
        log.warning("could not prune the embedding cache (%s); the new index is published all the same", exc)
        return
    if forgotten:
        log.info("embedding cache: forgot %d photos no longer in the catalogue", forgotten)


def forget_departed_texts(path: Path, model: TextEmbedder, items: list[CatalogItem], fields: list[TextField],
                          tags: dict[int, Tags]) -> None:
    """Drop cached text vectors of texts the published catalogue no longer holds, and other models'."""
    cache = TextVectorCache(path, model.info.digest)
    try:
        cache.retain({text_sha256(item_text(item, fields, tags)) for item in items})
    except sqlite3.Error as exc:
        log.warning("could not prune the text vector cache (%s); the new index is published all the same", exc)
    finally:
        cache.close()


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


@dataclass(frozen=True)
class EmbeddedTexts:
    vectors: np.ndarray  # row = item label
    embedded: int
    reused: int


def embed_item_texts(items: list[CatalogItem], fields: list[TextField], tags: dict[int, Tags],
                     model: TextEmbedder, cache: TextVectorCache) -> EmbeddedTexts:
    """Each item's text as the sentence model's vector; texts the cache knows (unchanged products) are not embedded.

    Photos of one product share their text (but for ImageNet tags), so each distinct text is embedded once.
    """
    texts = [item_text(item, fields, tags) for item in items]
    keys = [text_sha256(text) for text in texts]
    known = cache.get_many(sorted(set(keys)))
    missing = {key: text for key, text in zip(keys, texts) if key not in known}
    if missing:
        fresh = model.embed_texts(list(missing.values()))
        cache.put_many(list(zip(missing, fresh)))
        known.update(zip(missing, fresh))
    vectors = np.zeros((len(items), model.info.dim), np.float32)
    for item, key in zip(items, keys):
        vectors[item.label] = known[key]
    return EmbeddedTexts(vectors, len(missing), len(set(keys)) - len(missing))


def store_synonyms(catalog: Path) -> str | None:
    """The store's synonyms.txt beside products.csv, checked now so a typo fails the job before any embedding."""
    path = catalog / SYNONYMS
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8-sig")
    Synonyms.parse(text, str(path))
    return text


def reduce_catalogue(vectors: np.ndarray, reduction: Reduction,
                     build_dir: Path) -> tuple[np.ndarray, ProjectionInfo | None]:
    """The vectors the indexes hold: the embeddings, or their projection learned here and saved in the version."""
    if reduction.kind is None:
        return vectors, None
    projection = Projection.learn(vectors, reduction)
    sha256 = projection.save(build_dir / PROJECTION)
    log.info("learned %s on %d vectors", reduction, projection.learned_on)
    return projection.apply(vectors), ProjectionInfo(reduce=str(reduction), file=PROJECTION, sha256=sha256,
                                                     input_dim=projection.input_dim, dim=projection.dim,
                                                     learned_on=projection.learned_on)


def served_self_eval(previous: Path | None) -> SelfEval | None:
    return read_manifest(previous).self_eval if previous is not None else None


def build_index(catalog: Path, index_root: Path, weights: str = "auto", *, precision: PrecisionSetting = "auto",
                batch_size: int = 16, workers: int = 2, index_type: str = "Flat", keep: int | None = None,
                embedder: Embedder | None = None, progress: Progress | None = None,
                text_weights: dict[str, float] | None = None,
                text_exclude: frozenset[str] = DEFAULT_EXCLUDED, int8: Int8Options | None = None,
                scan: CatalogScan | None = None, source: str | None = None,
                before_publish: Callable[[Path | None, list[CatalogItem]], None] | None = None,
                text_model: TextEmbedder | str | None = None,
                reduce: str = "none", self_eval_margin: float = DEFAULT_MARGIN, force: bool = False,
                vector_store: VectorStoreSettings | None = None) -> BuildSummary:
    """Scan, (quantise and gate), embed what the cache lacks, fit the head, (learn the reduction), write a
    hidden build folder, measure it on its own products, publish it unless that gate refuses, prune old versions.

    Holds the index root's lock throughout, so two jobs never build at once. A feed passes its own
    `scan` (photos in its cache under `catalog`) and the feed's address as `source`; `before_publish`
    sees the serving version and the new items under the lock, and may refuse by raising.
    `text_model`: a loaded sentence model, or a TEXT_MODEL setting (`auto`, a name, a directory);
    None or `none` writes no text vectors (words searched by bm25 alone).
    With VECTOR_STORE=milvus the vectors go to a collection of their own, written and loaded before the
    version is published, and dropped again if the build fails.
    """
    started = time.perf_counter()
    scan = scan or scan_catalog(catalog)
    if not scan.entries:
        raise EmptyCatalog(
            f"No images found in {catalog}. Put photos in {catalog}/<category>/, one folder per category "
            "(e.g. chair/, lamp/), then run the indexing job again.")
    reduction = Reduction.parse(reduce)
    reduction.check(EMBEDDING_DIM, len(scan.entries))  # before any embedding; again once the unreadable are out
    check_index_type(index_type, reduction.output_dim(EMBEDDING_DIM))
    synonyms = store_synonyms(catalog)
    words_model = load_text_model(text_model) if isinstance(text_model, str) else text_model
    own_embedder = embedder is None  # torch loads the weights and exports; ONNX Runtime embeds
    embedder = embedder or Embedder(weights, precision, fused=False, torch_precision="fp32")
    vector_store = vector_store or VectorStoreSettings()
    try:
        milvus = milvus_store.connect(vector_store) if vector_store.vector_store == "milvus" else None
    except VectorStoreUnavailable as exc:
        raise VectorStoreFailed(exc.message) from exc
    layout = IndexLayout(index_root)
    with exclusive(layout.root):
        clear_abandoned_builds(layout)
        previous = layout.current()
        build_dir = layout.begin_build()
        cache: EmbeddingCache | None = None
        stored: VectorStoreRecord | None = None
        try:
            network = export_catalogue_network(embedder, build_dir, release_torch=own_embedder)
            model, quantised, precision_reason, warnings = choose_catalogue_model(scan, embedder, network, build_dir,
                                                                                  int8 or Int8Options())
            for warning in warnings:
                log.warning("%s", warning)
            cache = EmbeddingCache(layout.root / CACHE_FILE, model.cache_key)
            skipped = list(scan.skipped)
            embed_started = time.perf_counter()
            done = embed_catalog(scan, model, cache, build_dir, batch_size, workers, skipped, progress)
            embed_seconds = time.perf_counter() - embed_started
            items, vectors = done.items, done.vectors
            if not items:
                raise EmptyCatalog(f"None of the {len(scan.entries)} images in {catalog} could be read.")
            categories = sorted({i.category for i in items})
            labels = np.array([categories.index(i.category) for i in items])
            accuracy, folds = cross_validated_accuracy(vectors, labels, categories)
            head = fit_head(vectors, labels, categories)
            head.save(build_dir / HEAD)
            served_network, int8_model = write_served_graphs(build_dir, head, network, quantised)
            index_vectors, projection = reduce_catalogue(vectors, reduction, build_dir)
            stats = []
            indexes = {}  # Faiss, in memory at least: the self-evaluation searches them whatever the store
            for name in categories:
                members = labels == categories.index(name)
                built = indexes[name] = CategoryIndex.build(index_vectors[members], np.flatnonzero(members),
                                                            index_type if milvus is None else "Flat")
                if milvus is None:
                    (build_dir / INDEXES).mkdir(exist_ok=True)
                    built.save(index_file(build_dir, name))
                stats.append(CategoryStats(name=name, items=len(built), index_type=built.factory,
                                           search_parameters=built.search_parameters))
            per_category = {c.name: c.items for c in stats}
            index_types = {c.name: c.index_type for c in stats}
            (build_dir / ITEMS).write_text(json.dumps([i.model_dump() for i in items], ensure_ascii=False))
            fields = text_fields(items, text_weights, text_exclude)
            write_text_index(build_dir / TEXT_INDEX, items, fields, done.tags)
            text_done: EmbeddedTexts | None = None
            if words_model is not None:
                text_cache = TextVectorCache(layout.root / CACHE_FILE, words_model.info.digest)
                try:
                    text_done = embed_item_texts(items, fields, done.tags, words_model, text_cache)
                    np.save(build_dir / TEXT_VECTORS, text_done.vectors, allow_pickle=False)
                finally:
                    text_cache.close()
            if synonyms is not None:
                (build_dir / SYNONYMS).write_text(synonyms, encoding="utf-8")
            self_eval = self_evaluate(items, index_vectors, indexes, weights=embedder.info.weights, reduce=str(reduction))
            gate = publish_gate(self_eval, served_self_eval(previous), previous.name if previous else None,
                                self_eval_margin, force)
            version = new_version_name()
            if milvus is not None:
                try:
                    stored = milvus_store.publish(milvus, version, items, index_vectors, vector_store.milvus_index_type)
                except VectorStoreUnavailable as exc:
                    raise VectorStoreFailed(f"{exc.message} Nothing was published; the served version stays.") from exc
                stats = [c.model_copy(update={"index_type": stored.index_type,
                                              "search_parameters": stored.search_parameters}) for c in stats]
                index_types = {c.name: c.index_type for c in stats}
            manifest = Manifest(
                version=version, created_at=datetime.now(UTC), model=model.info,
                preprocessing=embedder.preprocessing, embedding_dim=int(vectors.shape[1]), index_type=index_type,
                categories=stats,
                head=HeadStats(cv_accuracy=accuracy, folds=folds, train_items=len(items)),
                catalog=source or str(catalog), requested_precision=embedder.requested_precision,
                precision_reason=precision_reason, int8=int8_model, network=served_network,
                compatibility=compatibility(model.precision, quantised),
                text_model=words_model.info if words_model is not None else None,
                projection=projection, self_eval=self_eval,
                vector_store=stored or VectorStoreRecord(index_type=index_type),
            )
            (build_dir / MANIFEST).write_text(manifest.model_dump_json(indent=2))
            if before_publish is not None:
                before_publish(previous, items)
            final = layout.publish(build_dir, version)
            forget_departed(cache, items)
            if words_model is not None:
                forget_departed_texts(layout.root / CACHE_FILE, words_model, items, fields, done.tags)
        except BaseException:
            shutil.rmtree(build_dir, ignore_errors=True)
            if milvus is not None and stored is not None and stored.collection:
                milvus_store.drop(milvus, stored.collection)
            raise
        finally:
            if cache is not None:
                cache.close()
        removed = removed_since(previous, items)
        if keep is not None:
            prune_versions(layout, keep, milvus)
    return BuildSummary(version=version, version_dir=final, weights=embedder.info.weights, per_category=per_category,
                        skipped=skipped, cv_accuracy=accuracy, folds=folds, indexed=len(items),
                        seconds=time.perf_counter() - started, embed_seconds=embed_seconds,
                        embedded=done.embedded, reused=done.reused, removed=removed, index_types=index_types,
                        disagreements=scan.disagreements,
                        text_fields=fields, tagged=len(done.tags) if writes_tags(embedder.info.weights) else None,
                        synonyms="synonyms.txt from the catalogue" if synonyms is not None else "default",
                        precision=model.precision, precision_reason=precision_reason,
                        int8_gate=quantised.record.gate if quantised else None, warnings=warnings,
                        text_model=words_model.info if words_model is not None else None,
                        text_embedded=text_done.embedded if text_done else 0,
                        text_reused=text_done.reused if text_done else 0,
                        reduce=str(reduction), index_dim=int(index_vectors.shape[1]), self_eval=self_eval, gate=gate)
