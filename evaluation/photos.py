"""`python -m evaluation.photos --index DIR --queries DIR --out DIR`: measure quality like a search team.

It runs in-process with the services' own code: the classifier's `Embedder` and the index's
`CategoryHead`, the similarity service's `CatalogIndex.search`, and the gateway's hedging
(`lookalike.hedging`). Each configuration (precision × preprocessing × index type) answers as
a service built and run that way would. The stored index serves the configuration it was built
with; any other precision or preprocessing re-embeds the catalogue from the folder the manifest
names and fits its own head, as the indexing job would. Embeddings are computed once per
precision and preprocessing, and shared by the index types.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, get_args

import faiss
import numpy as np

from evaluation.contact_sheet import SheetRow, draw_contact_sheet
from evaluation.query_set import Query, read_query_set
from evaluation.report import markdown_report, publish_report, served_version
from evaluation.retrieval_metrics import category_accuracy, confusion_matrix, retrieval_metrics
from evaluation.settings import EvalIndexType, EvalPrecision, PhotoEvalSettings, PreprocessingMode
from indexing.build import THUMBNAIL_SIDE
from lookalike.catalog.faiss_store import CategoryIndex
from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.layout import HEAD
from lookalike.catalog.manifest import Preprocessing
from lookalike.contracts import Hit, Precision
from lookalike.errors import EvalError, ImageRejected
from lookalike.hedging import categories_to_search, merge_by_score
from lookalike.log_lines import configure_logging
from lookalike.program import Program
from lookalike.settings import MAX_PIXELS
from lookalike.vision.embedder import Embedder
from lookalike.vision.head import CategoryHead
from lookalike.vision.head_training import fit_head
from lookalike.vision.precision import TORCH_PRECISIONS
from lookalike.vision.preprocess import decode_image, load_model_input, to_model_input

log = logging.getLogger("lookalike.eval")
T = TypeVar("T", bound=str)

PRECISIONS: tuple[str, ...] = get_args(EvalPrecision)
MODES: tuple[str, ...] = get_args(PreprocessingMode)
INDEX_TYPES: tuple[str, ...] = get_args(EvalIndexType)
DEPTH = 10  # the deepest rank any metric looks at
SHEET_RESULTS = 5
RANDOM_WARNING = "RANDOM WEIGHTS: these figures test the harness and say nothing about quality."


@dataclass(frozen=True)
class LoadedQuery:
    query: Query
    data: bytes


@dataclass(frozen=True)
class Configuration:
    """One way a service could be set up: its precision, its preprocessing, and its index type."""

    precision: Precision
    mode: str
    index: str

    @property
    def name(self) -> str:
        return f"{self.precision} {self.mode} {self.index}"


@dataclass
class Embedded:
    """Catalogue and queries as a service with one precision and preprocessing sees them."""

    catalog_vectors: np.ndarray  # rows follow `Evaluation.labels`
    catalog_source: str
    head: CategoryHead
    query_vectors: np.ndarray
    probabilities: np.ndarray  # (queries, categories), columns in `head.categories` order
    decode_ms: np.ndarray
    embed_ms: np.ndarray  # forward pass and head, for the timed queries


@dataclass(frozen=True)
class SearchSpace:
    """A catalogue index and how a query embedding enters it (PCA whitening, or as it is)."""

    catalog: CatalogIndex
    transform: Callable[[np.ndarray], np.ndarray]


@dataclass
class Outcome:
    configuration: Configuration
    summary: dict[str, object]
    decided: list[str]
    confidence: list[float]
    gated: list[list[Hit]]


@dataclass(frozen=True)
class Options:
    weights: str = "auto"
    catalog: Path | None = None  # default: the folder the manifest names
    precisions: tuple[Precision, ...] = TORCH_PRECISIONS
    modes: tuple[str, ...] = MODES
    index_types: tuple[str, ...] = INDEX_TYPES
    hedge_below: tuple[float, ...] = (0.5, 0.7, 0.9)
    pcaw_dim: int = 256
    timed_queries: int = 10
    batch_size: int = 16
    workers: int = 2


class Evaluation:
    """The stored index version under evaluation, and how to answer as each configuration would."""

    def __init__(self, index_root: Path, options: Options) -> None:
        version_dir = served_version(index_root)
        self.index_root = index_root
        self.options = options
        self.stored = CatalogIndex.load(version_dir)
        self.manifest = self.stored.manifest
        self.labels = np.array(sorted(self.stored.items), dtype=np.int64)
        self.catalog_root = options.catalog or Path(self.manifest.catalog)

    def configurations(self) -> list[Configuration]:
        """Every combination, the index's own precision and preprocessing first."""
        def first(values: tuple[T, ...], own: str) -> list[T]:
            return sorted(values, key=lambda v: v != own)
        options = self.options
        return [Configuration(p, m, i) for p in first(options.precisions, self.manifest.model.precision)
                for m in first(options.modes, self.manifest.preprocessing.mode) for i in options.index_types]

    @property
    def baseline(self) -> Configuration:
        """The index as built and served: the stored vectors, flat."""
        own = Configuration(self.manifest.model.precision, self.manifest.preprocessing.mode, "flat")
        return own if own in self.configurations() else self.configurations()[0]

    def preprocessing(self, mode: str) -> Preprocessing:
        return self.manifest.preprocessing.model_copy(update={"mode": mode})

    # -- embedding ---------------------------------------------------------------------------

    def embed(self, precision: Precision, mode: str, queries: list[LoadedQuery]) -> Embedded:
        embedder = Embedder(self.options.weights, precision, self.preprocessing(mode))
        own = self.manifest.model
        if mode == self.manifest.preprocessing.mode and embedder.info.model_id != own.model_id:
            raise EvalError(
                f"The index was built with {own.weights} weights ({own.model_id}), but this evaluation runs "
                f"{embedder.info.weights} ({embedder.info.model_id}). Pass the same --weights as the index.")
        if embedder.info.model_id == own.model_id and embedder.precision == own.precision:
            vectors = np.stack([self.stored.categories[self.stored.items[int(label)].category].vector(int(label))
                                for label in self.labels])
            head, source = CategoryHead.load(self.stored.version_dir / HEAD), "stored index"
        else:
            vectors = self.embed_catalog(embedder)
            categories = self.manifest.category_names
            classes = np.array([categories.index(self.stored.items[int(label)].category) for label in self.labels])
            head, source = fit_head(vectors, classes, categories), f"re-embedded from {self.catalog_root}"
        inputs = [load_model_input(q.data, embedder.preprocessing, max_pixels=MAX_PIXELS) for q in queries]
        size = self.options.batch_size
        query_vectors = np.concatenate([embedder.embed_batch(inputs[i:i + size]) for i in range(0, len(inputs), size)])
        decode_ms, embed_ms = self.time_queries(embedder, head, queries)
        log.info("embedded %d queries with %s %s (%s catalogue)", len(queries), precision, mode, source)
        probabilities = head.predict_proba(query_vectors)  # the head reads whole embeddings
        if source == "stored index":  # searched as served: a REDUCE version's queries projected as the service does
            query_vectors = self.stored.query_vector(query_vectors)
        return Embedded(vectors, source, head, query_vectors, probabilities, decode_ms, embed_ms)

    def time_queries(self, embedder: Embedder, head: CategoryHead,
                     queries: list[LoadedQuery]) -> tuple[np.ndarray, np.ndarray]:
        """Milliseconds to decode, and to embed and classify, one query at a time as a lone request would,
        for `timed_queries` of them spread over the set; the metrics use embeddings made in batches, which is faster."""
        count = max(1, min(self.options.timed_queries, len(queries)))
        decode_ms, embed_ms = [], []
        for i in np.linspace(0, len(queries) - 1, count).round().astype(int):
            started = time.perf_counter()
            model_input = load_model_input(queries[i].data, embedder.preprocessing, max_pixels=MAX_PIXELS)
            decoded = time.perf_counter()
            head.predict_proba(embedder.embed_batch([model_input]))
            done = time.perf_counter()
            decode_ms.append((decoded - started) * 1000)
            embed_ms.append((done - decoded) * 1000)
        return np.array(decode_ms), np.array(embed_ms)

    def embed_catalog(self, embedder: Embedder) -> np.ndarray:
        """The stored items' images again, decoded as the indexing job decodes them, in label order."""
        root = self.catalog_root
        if not root.is_dir():
            raise EvalError(f"Re-embedding the catalogue for {embedder.precision} {embedder.preprocessing.mode} "
                            f"needs the catalogue folder {root}, which does not exist. Pass --catalog, or "
                            "leave that configuration out with --precisions / --modes.")
        files = [self.stored.items[int(label)].file for label in self.labels]

        def model_input(file: str) -> np.ndarray:
            try:
                image = decode_image((root / file).read_bytes(), min_side=max(embedder.preprocessing.resize,
                                     THUMBNAIL_SIDE), max_pixels=MAX_PIXELS)
            except (ImageRejected, OSError) as exc:
                raise EvalError(f"{root / file} cannot be read ({exc}); the catalogue changed since the index "
                                "was built. Re-index, then evaluate.") from exc
            return to_model_input(image, embedder.preprocessing)

        chunks = []
        batch_size = self.options.batch_size
        with ThreadPoolExecutor(max_workers=self.options.workers, thread_name_prefix="decode") as pool:
            inputs = pool.map(model_input, files)
            for start in range(0, len(files), batch_size):
                batch = [next(inputs) for _ in range(min(batch_size, len(files) - start))]
                chunks.append(embedder.embed_batch(batch))
                log.info("re-embedded %d of %d catalogue images (%s %s)", start + len(batch), len(files),
                         embedder.precision, embedder.preprocessing.mode)
        return np.concatenate(chunks)

    # -- searching ---------------------------------------------------------------------------

    def search_space(self, index_type: str, vectors: np.ndarray) -> SearchSpace:
        """Flat: cosine on the embeddings, as served. PCA-whitened: learned once on the whole catalogue,
        so that scores stay comparable across categories (the ungated search and hedging merge them)."""
        if index_type == "flat":
            return SearchSpace(self.category_indexes(vectors), lambda x: x)
        dim = min(self.options.pcaw_dim, len(vectors) - 1, vectors.shape[1])
        pca = faiss.PCAMatrix(vectors.shape[1], dim, -0.5)  # eigen_power -0.5: whitening
        pca.train(np.ascontiguousarray(vectors, dtype=np.float32))

        def whiten(x: np.ndarray) -> np.ndarray:
            y = pca.apply(np.ascontiguousarray(x.reshape(-1, vectors.shape[1]), dtype=np.float32))
            faiss.normalize_L2(y)
            return y.reshape(-1) if x.ndim == 1 else y

        return SearchSpace(self.category_indexes(whiten(vectors)), whiten)

    def category_indexes(self, vectors: np.ndarray) -> CatalogIndex:
        """The stored items over these vectors, one flat index per category, as the indexing job builds."""
        category_of = np.array([self.stored.items[int(label)].category for label in self.labels])
        categories = {name: CategoryIndex.build(vectors[category_of == name], self.labels[category_of == name])
                      for name in self.stored.categories}
        return dataclasses.replace(self.stored, categories=categories)

    def evaluate(self, configuration: Configuration, embedded: Embedded, queries: list[LoadedQuery]) -> Outcome:
        space = self.search_space(configuration.index, embedded.catalog_vectors)
        names = embedded.head.categories
        expected = [q.query.category for q in queries]
        products = [q.query.product_ids for q in queries]
        decided, confidence, search_ms = [], [], []
        gated: list[list[Hit]] = []
        ungated: list[list[Hit]] = []
        hedged: dict[float, list[list[Hit]]] = {t: [] for t in self.options.hedge_below}
        hedged_count = dict.fromkeys(self.options.hedge_below, 0)
        for vector, row in zip(embedded.query_vectors, embedded.probabilities):
            probabilities = {n: float(p) for n, p in zip(names, row)}
            choice = names[int(np.argmax(row))]
            query = space.transform(vector)
            per_category = {}
            for name in names:
                started = time.perf_counter()
                per_category[name] = space.catalog.search(name, query, DEPTH)
                if name == choice:
                    search_ms.append((time.perf_counter() - started) * 1000)
            decided.append(choice)
            confidence.append(probabilities[choice])
            gated.append(per_category[choice])
            ungated.append(merge_by_score(per_category.values(), DEPTH))
            for threshold in self.options.hedge_below:
                searched = categories_to_search(choice, probabilities, threshold)
                hedged_count[threshold] += len(searched) > 1
                hedged[threshold].append(merge_by_score((per_category[c] for c in searched), DEPTH))
        labels = sorted(set(names) | set(expected))
        decode, embed = float(embedded.decode_ms.mean()), float(embedded.embed_ms.mean())
        search = float(np.mean(search_ms))
        summary: dict[str, object] = {
            "name": configuration.name, "precision": configuration.precision, "preprocessing": configuration.mode,
            "index": configuration.index if configuration.index == "flat" else
            f"PCA-whitened to {space.catalog.categories[names[0]].dim}-d, flat",
            "catalog": embedded.catalog_source,
            "category_accuracy": category_accuracy(expected, decided),
            "confusion": {"labels": labels,
                          "rows_expected_columns_decided": confusion_matrix(expected, decided, labels)},
            "gated": retrieval_metrics(gated, expected, products),
            "ungated": retrieval_metrics(ungated, expected, products),
            "hedged": [{"hedge_below": t, "hedged_share": hedged_count[t] / len(queries),
                        **retrieval_metrics(hedged[t], expected, products)} for t in self.options.hedge_below],
            "time_per_query_ms": {"decode": decode, "embed_and_classify": embed, "search": search,
                                  "total": decode + embed + search, "timed_queries": len(embedded.embed_ms)},
        }
        return Outcome(configuration, summary, decided, confidence, gated)


def load_queries(folder: Path) -> tuple[list[LoadedQuery], list[dict[str, str]]]:
    """The query photos in memory; unreadable ones are left out with a reason, as the indexing job does."""
    loaded, skipped = [], []
    for query in read_query_set(folder):
        try:
            data = (folder / query.file).read_bytes()
            decode_image(data, min_side=1, max_pixels=MAX_PIXELS)
        except OSError as exc:
            skipped.append({"file": query.file, "reason": f"could not be read: {exc.strerror or exc}"})
            continue
        except ImageRejected as exc:
            skipped.append({"file": query.file, "reason": exc.message})
            continue
        loaded.append(LoadedQuery(query, data))
    if not loaded:
        raise EvalError(f"None of the queries in {folder} could be read.")
    return loaded, skipped


def run(evaluation: Evaluation, queries_dir: Path, out: Path, sheet_queries: int) -> dict[str, object]:
    """Evaluate every configuration; write report.json, report.md and contact_sheet.png into `out`."""
    queries, skipped = load_queries(queries_dir)
    outcomes: list[Outcome] = []
    embedded: dict[tuple[str, str], Embedded] = {}
    for configuration in evaluation.configurations():
        key = (configuration.precision, configuration.mode)
        if key not in embedded:
            embedded[key] = evaluation.embed(*key, queries)
        outcomes.append(evaluation.evaluate(configuration, embedded[key], queries))
        log.info("evaluated %s", configuration.name)
    baseline = next(o for o in outcomes if o.configuration == evaluation.baseline)
    report = build_report(evaluation, queries_dir, queries, skipped, outcomes, baseline)
    publish_report(out, "report", report, markdown_report(report))
    title = f"{baseline.configuration.name}, category gate on, index {evaluation.manifest.version}"
    sheet = draw_contact_sheet(sheet_rows(evaluation, queries, baseline, sheet_queries), title=title,
                               warning=RANDOM_WARNING if evaluation.manifest.model.weights == "random" else None)
    sheet.save(out / "contact_sheet.png", optimize=True)
    return report


def build_report(evaluation: Evaluation, queries_dir: Path, queries: list[LoadedQuery], skipped: list[dict[str, str]],
                 outcomes: list[Outcome], baseline: Outcome) -> dict[str, object]:
    """report.json: the baseline's figures at the top level, every configuration below."""
    manifest = evaluation.manifest
    base = baseline.summary
    gated = base["gated"]
    assert isinstance(gated, dict)
    return {
        "queries": len(queries),
        "queries_with_product_ids": sum(bool(q.query.product_ids) for q in queries),
        "weights": manifest.model.weights,
        **({"warning": RANDOM_WARNING} if manifest.model.weights == "random" else {}),
        "index": {"root": str(evaluation.index_root), "version": manifest.version, "items": len(evaluation.labels),
                  "categories": {c.name: c.items for c in manifest.categories}},
        "query_set": str(queries_dir),
        "baseline": base["name"],
        "category_accuracy": base["category_accuracy"],
        **gated,
        "confusion": base["confusion"],
        "time_per_query_ms": base["time_per_query_ms"],
        "hedge_below": list(evaluation.options.hedge_below),
        "configurations": [o.summary for o in outcomes],
        "skipped": skipped,
    }


def sheet_rows(evaluation: Evaluation, queries: list[LoadedQuery], outcome: Outcome, count: int) -> list[SheetRow]:
    """Queries spread evenly over the set (labels.csv is usually grouped by category), with their top 5."""
    picks = sorted({int(i) for i in np.linspace(0, len(queries) - 1, min(count, len(queries)))})
    stored = evaluation.stored
    return [SheetRow(query_image=decode_image(queries[i].data, min_side=THUMBNAIL_SIDE, max_pixels=MAX_PIXELS),
                     caption=queries[i].query.file, expected=queries[i].query.category,
                     decided=outcome.decided[i], confidence=outcome.confidence[i],
                     products=queries[i].query.product_ids,
                     results=[(stored.version_dir / stored.item(h.id).thumbnail, h)
                              for h in outcome.gated[i][:SHEET_RESULTS]])
            for i in picks]


def evaluate(settings: PhotoEvalSettings) -> int:
    configure_logging()
    started = time.perf_counter()
    options = Options(settings.weights, settings.catalog, settings.precisions, settings.modes, settings.indexes,
                      settings.hedge_below, settings.pcaw_dim, settings.timed_queries, settings.batch_size,
                      settings.workers)
    evaluation = Evaluation(settings.index, options)
    report = run(evaluation, settings.queries, settings.out, settings.sheet_queries)
    print(f"{report['queries']} queries, {len(evaluation.configurations())} configurations in "
          f"{time.perf_counter() - started:.0f} s. Reports in {settings.out}/: report.json, report.md, contact_sheet.png")
    return 0


PROGRAM = Program(PhotoEvalSettings, evaluate, prog="python -m evaluation.photos")
main = PROGRAM.main

if __name__ == "__main__":
    sys.exit(main())
