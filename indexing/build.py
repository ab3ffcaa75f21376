"""Build one index version from a catalogue folder, and publish it atomically.

`build_index(BuildPlan(...))` runs the `STAGES` on a hidden build folder, then publishes it in one
rename (the publish point: the last step that can fail the build), then runs the best-effort steps
(`after_publish`): cache pruning, reloads, version pruning, which are logged and never undo it.

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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from pydantic import SecretStr

from indexing.cache import CACHE_FILE, EmbeddingCache, TextVectorCache
from indexing.catalog import CatalogScan, Entry, Skipped, scan_catalog
from indexing.catalogue_report import folder_report
from indexing.imagenet_tags import Tags, top_tags, writes_tags
from indexing.lock import exclusive
from indexing.network_export import (
    NETWORK_ONLY,
    ExportedNetwork,
    Int8Options,
    choose_catalogue_model,
    compatibility,
    load_exported_network,
    write_served_graphs,
)
from indexing.notify import reload_services
from indexing.progress import Progress
from indexing.quantise_gate import Quantised
from indexing.self_eval import DEFAULT_MARGIN, publish_gate, self_evaluate
from indexing.text_export import forget_unnamed_copies, opened, place_in_store, text_copy_for_index
from indexing.torch_steps import SourceModel, export_given_network, export_source_network, run_step
from indexing.versions import prune_versions
from lookalike.catalog import milvus_store
from lookalike.catalog.faiss_store import CategoryIndex, check_index_type
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
from lookalike.catalog.manifest import (
    CatalogItem,
    CategoryStats,
    HeadStats,
    Int8Model,
    Manifest,
    NetworkModel,
    ProjectionInfo,
    SelfEval,
)
from lookalike.catalog.milvus_store import MilvusConnection
from lookalike.catalog.projection import PROJECTION, Projection, Reduction
from lookalike.catalog.synonyms import Synonyms
from lookalike.catalog.text_embedding import TextEmbedder, item_text, text_sha256
from lookalike.catalog.text_index import DEFAULT_EXCLUDED, TextField, text_fields, write_text_index
from lookalike.catalog.vector_store import VectorStoreRecord
from lookalike.contracts import EMBEDDING_DIM, GateFigures, Precision, PrecisionSetting, TextModelInfo
from lookalike.errors import (
    ApiError,
    EmptyCatalog,
    ImageRejected,
    JobError,
    VectorStoreFailed,
    VectorStoreUnavailable,
)
from lookalike.heap_trim import trim_heap
from lookalike.settings import MAX_PIXELS, VectorStoreSettings
from lookalike.vision.head_training import cross_validated_accuracy, fit_head
from lookalike.vision.onnx_engine import OnnxEmbedder
from lookalike.vision.preprocess import decode_image, to_model_input

if TYPE_CHECKING:
    from lookalike.vision.embedder import Embedder

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
    notified: list[str] = field(default_factory=list)  # one line per service replica told to reload
    pruned: list[str] = field(default_factory=list)  # old versions deleted
    after_publish_failures: list[str] = field(default_factory=list)  # best-effort steps that failed; the version stays

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
                  workers: int, skipped: list[Skipped], progress: Progress | None = None,
                  classes: Sequence[str] | None = None) -> EmbeddedCatalog:
    """Every readable image embedded or taken from the cache, its thumbnail written; items carry their Faiss labels.

    Each batch the network embeds is committed to the cache before the next one starts. `classes`: the
    ImageNet class names, where the weights know them (the tags).
    """
    (build_dir / THUMBNAILS).mkdir()
    progress = progress or Progress(len(scan.entries))
    items: list[CatalogItem] = []
    rows: list[np.ndarray] = []
    batch: list[Prepared] = []
    counts = {"embedded": 0, "reused": 0}
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
    forgotten = cache.retain({i.sha256 for i in items if i.sha256})
    if forgotten:
        log.info("embedding cache: forgot %d photos no longer in the catalogue", forgotten)


def forget_departed_texts(path: Path, model: TextEmbedder, items: list[CatalogItem], fields: list[TextField],
                          tags: dict[int, Tags]) -> None:
    """Drop cached text vectors of texts the published catalogue no longer holds, and other models'."""
    cache = TextVectorCache(path, model.cache_key)
    try:
        cache.retain({text_sha256(item_text(item, fields, tags)) for item in items})
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


@dataclass(frozen=True)
class BuildPlan:
    """What one run of the indexing job builds, from what, and whom it tells afterwards.

    `scan`: a feed's own scan of its photo cache under `catalog`, with the feed's address as `source`.
    `before_publish` sees the serving version and the new items under the lock, and may refuse by raising.
    `text_model`: a loaded ONNX copy of a sentence model, or a TEXT_MODEL setting (`auto`, a name, a directory),
    exported to ONNX into the root's text-models/ where no copy is there yet; None or `none` writes no text
    vectors (words searched by bm25 alone). `keep`: versions kept after publishing,
    the serving one and every one a notified service holds always among them (see `indexing.versions`).
    """

    catalog: Path
    index_root: Path
    weights: str = "auto"
    precision: PrecisionSetting = "auto"
    batch_size: int = 16
    workers: int = 2
    index_type: str = "Flat"
    keep: int | None = None
    text_weights: dict[str, float] | None = None
    text_exclude: frozenset[str] = DEFAULT_EXCLUDED
    text_model: TextEmbedder | str | None = None
    int8: Int8Options = Int8Options()
    reduce: str = "none"
    self_eval_margin: float = DEFAULT_MARGIN
    force: bool = False
    vector_store: VectorStoreSettings | None = None
    notify: tuple[str, ...] = ()
    internal_token: SecretStr | None = None
    embedder: Embedder | None = None
    torch_in_child: bool = False
    progress: Progress | None = None
    scan: CatalogScan | None = None
    source: str | None = None
    before_publish: Callable[[Path | None, list[CatalogItem]], None] | None = None


@dataclass
class Tools:
    """What the plan's settings load once: the text model and the vector store's connection (the text model's
    ONNX copy under the lock, where another job's pruning can't remove it)."""

    words_model: TextEmbedder | None
    milvus: MilvusConnection | None
    store: VectorStoreSettings
    words_copy: Path | None = None
    """The text model's ONNX copy that TEXT_MODEL names, until `words_model_stage` opens it."""


@dataclass
class Building:
    """One version taking shape in its hidden build folder; each stage fills in its part."""

    plan: BuildPlan
    scan: CatalogScan
    reduction: Reduction
    synonyms: str | None
    tools: Tools
    layout: IndexLayout
    previous: Path | None
    build_dir: Path
    started: float
    source: SourceModel | None = None
    model: CatalogueEmbedder | None = None
    network: ExportedNetwork | None = None
    quantised: Quantised | None = None
    precision_reason: str = ""
    warnings: list[str] = field(default_factory=list)
    cache: EmbeddingCache | None = None
    skipped: list[Skipped] = field(default_factory=list)
    done: EmbeddedCatalog | None = None
    embed_seconds: float = 0.0
    categories: list[str] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    accuracy: float | None = None
    folds: int = 0
    index_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, EMBEDDING_DIM), np.float32))
    projection: ProjectionInfo | None = None
    stats: list[CategoryStats] = field(default_factory=list)
    indexes: dict[str, CategoryIndex] = field(default_factory=dict)
    fields: list[TextField] = field(default_factory=list)
    text_done: EmbeddedTexts | None = None
    self_eval: SelfEval | None = None
    gate: str = ""
    version: str = ""
    stored: VectorStoreRecord | None = None
    removed: int = 0
    served_network: NetworkModel | None = None
    int8_model: Int8Model | None = None

    @property
    def items(self) -> list[CatalogItem]:
        assert self.done is not None, "embed_stage runs first"
        return self.done.items

    @property
    def source_model(self) -> SourceModel:
        assert self.source is not None, "model_stage runs first"
        return self.source

    @property
    def catalogue_model(self) -> CatalogueEmbedder:
        assert self.model is not None, "model_stage runs first"
        return self.model


AFTER_PUBLISH_ERRORS: tuple[type[Exception], ...] = (OSError, sqlite3.Error, ApiError, JobError)
"""What a step after the publish may fail with; it is logged and reported, and the published version stays."""


def after_publish_errors(milvus: MilvusConnection | None) -> tuple[type[Exception], ...]:
    """AFTER_PUBLISH_ERRORS, and pymilvus's own where the version went to Milvus (and pymilvus is loaded)."""
    if milvus is None:
        return AFTER_PUBLISH_ERRORS
    from pymilvus import MilvusException

    return (*AFTER_PUBLISH_ERRORS, MilvusException)


def check_plan(plan: BuildPlan) -> tuple[CatalogScan, Reduction, str | None]:
    """Everything that can be refused before a photo is embedded: no photos, a bad REDUCE or index type, bad synonyms."""
    scan = plan.scan or scan_catalog(plan.catalog)
    if not scan.entries:
        raise EmptyCatalog(
            f"No images found in {plan.catalog}. Put photos in {plan.catalog}/<category>/, one folder per category "
            "(e.g. chair/, lamp/), then run the indexing job again.")
    reduction = Reduction.parse(plan.reduce)
    reduction.check(EMBEDDING_DIM, len(scan.entries))  # before any embedding; again once the unreadable are out
    check_index_type(plan.index_type, reduction.output_dim(EMBEDDING_DIM))
    return scan, reduction, store_synonyms(plan.catalog)


def load_tools(plan: BuildPlan) -> Tools:
    store = plan.vector_store or VectorStoreSettings()
    try:
        milvus = milvus_store.connect(store) if store.vector_store == "milvus" else None
    except VectorStoreUnavailable as exc:
        raise VectorStoreFailed(exc.message) from exc
    words_model = plan.text_model if isinstance(plan.text_model, TextEmbedder) else None  # a setting: under the lock
    return Tools(words_model, milvus, store)


# The stages, in order: each fills in its part of the hidden build folder (and `Building`).

def model_stage(b: Building) -> None:
    """Export the network to ONNX (torch: see `indexing.torch_steps`), (quantise and gate it, then) choose the
    graph the catalogue is embedded with; from here on ONNX Runtime runs it."""
    path = b.build_dir / NETWORK_ONLY
    if b.plan.embedder is not None:
        b.source = export_given_network(b.plan.embedder, path)
    else:
        b.source = run_step(b.plan.torch_in_child, export_source_network, b.plan.weights, b.plan.precision, path)
        trim_heap()  # in process, the torch network is gone: give its memory back before the catalogue
    b.network = load_exported_network(b.source, path)
    b.model, b.quantised, b.precision_reason, b.warnings = choose_catalogue_model(
        b.scan, b.source, b.network, b.build_dir, b.plan.int8)
    for warning in b.warnings:
        log.warning("%s", warning)


def words_model_stage(b: Building) -> None:
    """Open the text model's ONNX copy, found or exported under the lock (see `build_index`)."""
    if b.tools.words_copy is not None:
        b.tools.words_model = opened(b.tools.words_copy, None)


def embed_stage(b: Building) -> None:
    """Embed what the cache lacks, write the thumbnails."""
    b.cache = EmbeddingCache(b.layout.root / CACHE_FILE, b.catalogue_model.cache_key)
    b.skipped = list(b.scan.skipped)
    embed_started = time.perf_counter()
    b.done = embed_catalog(b.scan, b.catalogue_model, b.cache, b.build_dir, b.plan.batch_size, b.plan.workers,
                           b.skipped, b.plan.progress, b.source_model.imagenet_classes)
    b.embed_seconds = time.perf_counter() - embed_started
    if not b.items:
        raise EmptyCatalog(f"None of the {len(b.scan.entries)} images in {b.plan.catalog} could be read.")


def head_stage(b: Building) -> None:
    """Fit the category head, measured by cross-validation, and append it to the graphs the classifier serves."""
    assert b.done is not None and b.network is not None
    b.categories = sorted({i.category for i in b.items})
    b.labels = np.array([b.categories.index(i.category) for i in b.items])
    b.accuracy, b.folds = cross_validated_accuracy(b.done.vectors, b.labels, b.categories)
    head = fit_head(b.done.vectors, b.labels, b.categories)
    head.save(b.build_dir / HEAD)
    b.served_network, b.int8_model = write_served_graphs(b.build_dir, head, b.network, b.quantised)


def vector_index_stage(b: Building) -> None:
    """(Learn the reduction, then) one Faiss index per category: written with Faiss, in memory only with Milvus."""
    assert b.done is not None
    b.index_vectors, b.projection = reduce_catalogue(b.done.vectors, b.reduction, b.build_dir)
    milvus = b.tools.milvus
    for name in b.categories:
        members = b.labels == b.categories.index(name)
        built = b.indexes[name] = CategoryIndex.build(b.index_vectors[members], np.flatnonzero(members),
                                                      b.plan.index_type if milvus is None else "Flat")
        if milvus is None:
            (b.build_dir / INDEXES).mkdir(exist_ok=True)
            built.save(index_file(b.build_dir, name))
        b.stats.append(CategoryStats(name=name, items=len(built), index_type=built.factory,
                                     search_parameters=built.search_parameters))
    (b.build_dir / ITEMS).write_text(json.dumps([i.model_dump() for i in b.items], ensure_ascii=False))


def text_stage(b: Building) -> None:
    """The words index, the items' text vectors (with a sentence model) and the store's synonyms."""
    assert b.done is not None
    b.fields = text_fields(b.items, b.plan.text_weights, b.plan.text_exclude)
    write_text_index(b.build_dir / TEXT_INDEX, b.items, b.fields, b.done.tags)
    if b.tools.words_model is not None:
        text_cache = TextVectorCache(b.layout.root / CACHE_FILE, b.tools.words_model.cache_key)
        try:
            b.text_done = embed_item_texts(b.items, b.fields, b.done.tags, b.tools.words_model, text_cache)
            np.save(b.build_dir / TEXT_VECTORS, b.text_done.vectors, allow_pickle=False)
        finally:
            text_cache.close()
    if b.synonyms is not None:
        (b.build_dir / SYNONYMS).write_text(b.synonyms, encoding="utf-8")


def self_eval_stage(b: Building) -> None:
    """Measure the version on its own products; SelfEvalRegressed when it finds them worse than the served one."""
    b.self_eval = self_evaluate(b.items, b.index_vectors, b.indexes, weights=b.source_model.info.weights,
                                reduce=str(b.reduction))
    b.gate = publish_gate(b.self_eval, served_self_eval(b.previous), b.previous.name if b.previous else None,
                          b.plan.self_eval_margin, b.plan.force)


def vector_store_stage(b: Building) -> None:
    """Name the version; with Milvus, write and load its collection (dropped again if the build then fails)."""
    b.version = new_version_name()
    if b.tools.milvus is None:
        return
    try:
        b.stored = milvus_store.publish(b.tools.milvus, b.version, b.items, b.index_vectors,
                                        b.tools.store.milvus_index_type)
    except VectorStoreUnavailable as exc:
        raise VectorStoreFailed(f"{exc.message} Nothing was published; the served version stays.") from exc
    b.stats = [c.model_copy(update={"index_type": b.stored.index_type,
                                    "search_parameters": b.stored.search_parameters}) for c in b.stats]


def manifest_stage(b: Building) -> None:
    """The manifest: what was built, from what, with which model; then the plan's last word (`before_publish`)."""
    assert b.done is not None
    model, source, words_model = b.catalogue_model, b.source_model, b.tools.words_model
    manifest = Manifest(
        version=b.version, created_at=datetime.now(UTC), model=model.info,
        preprocessing=source.preprocessing, embedding_dim=int(b.done.vectors.shape[1]),
        index_type=b.plan.index_type, categories=b.stats,
        head=HeadStats(cv_accuracy=b.accuracy, folds=b.folds, train_items=len(b.items)),
        catalog=b.plan.source or str(b.plan.catalog), requested_precision=source.requested_precision,
        precision_reason=b.precision_reason, int8=b.int8_model, network=b.served_network,
        compatibility=compatibility(model.precision, b.quantised),
        text_model=words_model.info if words_model is not None else None,
        projection=b.projection, self_eval=b.self_eval,
        vector_store=b.stored or VectorStoreRecord(index_type=b.plan.index_type),
    )
    (b.build_dir / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    folder_report(b.build_dir, b.plan.source or str(b.plan.catalog), b.items, b.skipped)  # a feed run writes its own over it
    b.removed = removed_since(b.previous, b.items)  # read now: after the publish, nothing may fail the build
    if b.plan.before_publish is not None:
        b.plan.before_publish(b.previous, b.items)


STAGES: tuple[Callable[[Building], None], ...] = (
    model_stage, words_model_stage, embed_stage, head_stage, vector_index_stage, text_stage, self_eval_stage,
    vector_store_stage, manifest_stage)
"""Everything before the publish, in order; a new stage is one more entry here."""


def discard(b: Building) -> None:
    """Undo an unpublished build: its folder, and its Milvus collection if it has one."""
    shutil.rmtree(b.build_dir, ignore_errors=True)
    if b.tools.milvus is not None and b.stored is not None and b.stored.collection:
        milvus_store.drop(b.tools.milvus, b.stored.collection)


def build_index(plan: BuildPlan) -> BuildSummary:
    """Scan, (quantise and gate), embed what the cache lacks, fit the head, (learn the reduction), write a
    hidden build folder, measure it on its own products, and publish it unless that gate refuses; then,
    best-effort, prune the caches, tell the services and prune old versions.

    Holds the index root's lock throughout, so two jobs never build at once. The publish is the last step
    that can fail the build: until it, a failure (or Ctrl-C) discards the build folder and its Milvus
    collection; after it, nothing undoes it, and a failing step is logged and named in the summary.
    """
    started = time.perf_counter()
    scan, reduction, synonyms = check_plan(plan)
    tools = load_tools(plan)
    layout = IndexLayout(plan.index_root)
    with exclusive(layout.root):
        clear_abandoned_builds(layout)
        # Under the lock: another job's pruning never removes a copy this one is about to name. Opened after
        # the network's export (`words_model_stage`), so that the export runs beside as little as can be.
        if isinstance(plan.text_model, str):
            tools.words_copy = text_copy_for_index(plan.text_model, layout.root, in_child=plan.torch_in_child)
        if tools.words_model is not None:
            place_in_store(tools.words_model, layout.root)
        previous = layout.current()
        b = Building(plan, scan, reduction, synonyms, tools, layout, previous, layout.begin_build(), started)
        published = False
        try:
            try:
                for stage in STAGES:
                    stage(b)
                final = layout.publish(b.build_dir, b.version)  # the publish point
                published = True
            finally:
                if not published:
                    discard(b)
            summary = summarise(b, final)
            after_publish(b, summary)
        finally:
            if b.cache is not None:
                b.cache.close()
    return summary


def after_publish(b: Building, summary: BuildSummary) -> None:
    """Best-effort steps on a published version: each failure is logged and put in the summary, never undone."""

    errors = after_publish_errors(b.tools.milvus)

    def attempt(what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except errors as exc:
            log.warning("after publishing %s, %s failed: %s", b.version, what, exc)
            summary.after_publish_failures.append(f"{what} failed: {exc}")

    assert b.done is not None
    done, words_model = b.done, b.tools.words_model
    if b.cache is not None:
        cache = b.cache
        attempt("pruning the embedding cache", lambda: forget_departed(cache, b.items))
    if words_model is not None:
        attempt("pruning the text vector cache", lambda: forget_departed_texts(
            b.layout.root / CACHE_FILE, words_model, b.items, b.fields, done.tags))
    held: set[str] = set()

    def notify() -> None:
        for reloaded in reload_services(list(b.plan.notify), b.plan.internal_token):
            summary.notified.append(reloaded.line)
            if reloaded.holds:
                held.add(reloaded.holds)

    attempt("telling the services to reload", notify)
    keep = b.plan.keep
    if keep is not None:
        def prune() -> None:
            summary.pruned = prune_versions(b.layout, keep, b.tools.milvus, held=held)

        attempt("pruning old index versions", prune)

    def forget_copies() -> None:
        forgotten = forget_unnamed_copies(b.layout)
        if forgotten:
            log.info("forgot text-model copies no version names: %s", ", ".join(forgotten))

    attempt("forgetting text-model copies no version names", forget_copies)


def summarise(b: Building, final: Path) -> BuildSummary:
    assert b.done is not None
    done, source, words_model, text_done = b.done, b.source_model, b.tools.words_model, b.text_done
    return BuildSummary(
        version=b.version, version_dir=final, weights=source.info.weights,
        per_category={c.name: c.items for c in b.stats}, skipped=b.skipped, cv_accuracy=b.accuracy, folds=b.folds,
        indexed=len(done.items), seconds=time.perf_counter() - b.started, embed_seconds=b.embed_seconds,
        embedded=done.embedded, reused=done.reused, removed=b.removed,
        index_types={c.name: c.index_type for c in b.stats}, disagreements=b.scan.disagreements,
        text_fields=b.fields, tagged=len(done.tags) if writes_tags(source.info.weights) else None,
        synonyms="synonyms.txt from the catalogue" if b.synonyms is not None else "default",
        precision=b.catalogue_model.precision, precision_reason=b.precision_reason,
        int8_gate=b.quantised.record.gate if b.quantised else None, warnings=b.warnings,
        text_model=words_model.info if words_model is not None else None,
        text_embedded=text_done.embedded if text_done else 0, text_reused=text_done.reused if text_done else 0,
        reduce=str(b.reduction), index_dim=int(b.index_vectors.shape[1]), self_eval=b.self_eval, gate=b.gate)
