"""The similarity service's job: the catalogue's embeddings, one Faiss index per category.

Vectors are L2-normalised, so inner product is cosine similarity. Each index is an
`IndexIDMap2`, whose ids are the photos' labels in `items.json`, and which can hand a stored
vector back (for "more like this").

Every photo is searched, but a result is a product group: photos that share an `id` are one
product, and products that share an `item_group_id` are variants of one group. A search asks
Faiss for more photos until it holds `k` groups. Filters and exclusions become the set of
labels allowed, which Faiss applies inside the search (an `IDSelector`), so `k` results come
back whenever `k` groups pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from lookalike.catalog.filters import ColumnTable
from lookalike.catalog.hybrid import Fusion, Meaning, bm25_products, fused_products, word_labels
from lookalike.catalog.layout import index_file, read_items, read_manifest
from lookalike.catalog.manifest import CatalogItem, Manifest
from lookalike.catalog.projection import Projection
from lookalike.catalog.refine import RocchioWeights, rocchio
from lookalike.catalog.text_embedding import TextModels
from lookalike.catalog.text_index import TextIndex
from lookalike.catalog.vector_store import CategoryVectors, Restriction, VectorStoreKind
from lookalike.contracts import FilterableColumn, Hit
from lookalike.errors import (
    IndexMismatch,
    NotInCatalog,
    NotReady,
    ProjectionMismatch,
    UnknownCategory,
    UnknownItem,
    UnusableIndexType,
    WrongDimension,
)
from lookalike.where import Filter, parse_filters

log = logging.getLogger("lookalike.similarity")


# HNSW's search breadth. On 20,000 random 256-d vectors (the hard case) Faiss's default of 16 gave
# recall@10 0.18 and 64 gave 0.48, for 0.19 ms more per query.
HNSW_EF_SEARCH = 64


def ivf_nprobe(nlist: int) -> int:
    """Lists an IVF search visits: nlist/64, at least 16. `make bench-index` measured recall@10 of
    0.97 with IVF1024 at 10^5 vectors (nprobe 16) and 0.99 with IVF4096 at 10^6 (nprobe 64)."""
    return min(nlist, max(16, nlist // 64))


def set_search_parameters(index: faiss.Index, factory: str) -> dict[str, int]:
    """Search-time settings, saved with the index: Faiss's defaults (nprobe 1, efSearch 16) give away recall."""
    parameters = {}
    try:
        parameters["nprobe"] = ivf_nprobe(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        pass  # not an IVF index
    if "HNSW" in factory:
        parameters["efSearch"] = HNSW_EF_SEARCH
    space = faiss.ParameterSpace()  # reaches through IndexIDMap2 and PCA pre-transforms
    for name, value in parameters.items():
        space.set_index_parameter(index, name, value)
    return parameters


def check_index_type(factory: str, dim: int) -> None:
    """Refuse a bad `--index-type` before any image is embedded, not after."""
    try:
        faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        raise UnusableIndexType(
            f"{factory!r} is not a Faiss index factory string; try Flat, HNSW32 or IVF256,Flat.") from None


class CategoryIndex:
    """One category's vectors in Faiss, keyed by item label."""

    def __init__(self, index: faiss.Index, factory: str = "Flat", search_parameters: dict[str, int] | None = None) -> None:
        self.index = index
        self.factory = factory
        self.search_parameters = search_parameters or {}

    @classmethod
    def build(cls, vectors: np.ndarray, labels: np.ndarray, factory: str = "Flat") -> CategoryIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        base = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if not base.is_trained:
            try:
                base.train(vectors)
            except RuntimeError as exc:
                # e.g. IVF256 needs at least 256 vectors to train: a category that small is searched exactly.
                log.warning("%d vectors cannot train %s (%s); using Flat", len(vectors), factory, exc)
                return cls.build(vectors, labels, "Flat")
        index = faiss.IndexIDMap2(base)
        index.add_with_ids(vectors, np.ascontiguousarray(labels, dtype=np.int64))
        return cls(index, factory, set_search_parameters(index, factory))

    @classmethod
    def load(cls, path: Path) -> CategoryIndex:
        return cls(faiss.read_index(str(path)))

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k nearest (label, score) pairs, best first, among the `allowed` labels (None: all).

        `vector` may be several queries, one per row (a product's photos): a label scores its best
        over them. `allowed` is applied inside Faiss, by an id selector; where the approximate
        search's breadth (IVF nprobe, HNSW efSearch) finds fewer than k allowed labels, the search
        widens until it has them or has looked everywhere.
        """
        queries = np.ascontiguousarray(vector.reshape(-1, self.dim), dtype=np.float32)
        limit = len(self) if allowed is None else len(allowed)
        k = min(k, limit)
        if k <= 0:
            return []
        selector = None if allowed is None else faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        # A filter's nearest allowed vectors lie farther out: search 1/sqrt(share allowed) times as broadly.
        # `make bench-index`, 10^5 vectors filtered to 1%, IVF1024 nprobe 16: recall@10 0.78 as it is,
        # 0.99 at nprobe 160 (0.31 ms), 1.0 at nprobe 1024 (1.2 ms).
        widen = 1 if allowed is None else max(1, round(math.sqrt(len(self) / limit)))
        while True:
            params, exhaustive = self._search_parameters(selector, widen)
            scores, labels = self.index.search(queries, k, params=params)
            best: dict[int, float] = {}
            for label, score in zip(labels.ravel(), scores.ravel()):
                if label >= 0 and best.get(int(label), -np.inf) < score:
                    best[int(label)] = float(score)
            if len(best) >= k or exhaustive:
                return sorted(best.items(), key=lambda pair: pair[1], reverse=True)[:k]
            widen *= 4

    def _search_parameters(self, selector: faiss.IDSelector | None,
                           widen: int) -> tuple[faiss.SearchParameters | None, bool]:
        """Faiss's per-search parameters of this index's type, `widen` times as broad; and whether that is all of it."""
        inner: Any = faiss.downcast_index(getattr(self.index, "index", self.index))  # inside IndexIDMap2
        while isinstance(inner, faiss.IndexPreTransform):
            inner = faiss.downcast_index(inner.index)
        params: Any
        if isinstance(inner, faiss.IndexIVF):
            params = faiss.SearchParametersIVF()
            params.nprobe = min(inner.nlist, inner.nprobe * widen)
            exhaustive = params.nprobe >= inner.nlist
        elif isinstance(inner, faiss.IndexHNSW):
            params = getattr(faiss, "SearchParametersHNSW")()  # noqa: B009 (absent from faiss's type hints)
            params.efSearch = min(len(self), inner.hnsw.efSearch * widen)
            exhaustive = params.efSearch >= len(self)
        elif selector is None:
            return None, True
        else:
            params, exhaustive = faiss.SearchParameters(), True
        if selector is not None:
            params.sel = selector
        return params, exhaustive

    def vector(self, label: int) -> np.ndarray:
        return np.asarray(self.index.reconstruct(label), dtype=np.float32)

    def nearest(self, queries: np.ndarray, k: int, restriction: Restriction) -> list[tuple[int, float]]:
        """`CategoryVectors`' search: Faiss filters by label, so it takes the restriction's `allowed`."""
        return self.search(queries, k, restriction.allowed)


VectorOpener = Callable[[Manifest, Path, list[CatalogItem]], Mapping[str, CategoryVectors]]
"""Opens a version's vectors, per category, wherever its manifest says they are."""


def open_faiss(manifest: Manifest, version_dir: Path, items: list[CatalogItem]) -> dict[str, CategoryVectors]:
    """The version's Faiss files; a version published to another engine is refused with what to set."""
    store = manifest.vector_store
    if store is not None and store.kind != VectorStoreKind.FAISS:
        raise IndexMismatch(f"Index version {manifest.version} keeps its vectors in {store.kind} (collection "
                            f"{store.collection}), but this service reads Faiss files: set VECTOR_STORE={store.kind} "
                            "and its connection settings, or re-index with VECTOR_STORE=faiss.")
    return {c.name: CategoryIndex.load(index_file(version_dir, c.name)) for c in manifest.categories}


@dataclass(frozen=True)
class Products:
    """Which photos make which product, and which products make which variant group."""

    photos: dict[str, list[CatalogItem]]  # product id -> its photos, in catalogue order
    groups: dict[str, list[str]]  # group -> its product ids
    labels_by_category: dict[str, np.ndarray]  # every photo's label, per category
    group_of: np.ndarray  # label -> group number
    group_number: dict[str, int]  # group -> its number
    photo_number: dict[int, int]  # label -> its place among its product's photos

    @classmethod
    def of(cls, items: list[CatalogItem]) -> Products:
        photos: dict[str, list[CatalogItem]] = {}
        groups: dict[str, list[str]] = {}
        for item in items:
            photos.setdefault(item.id, []).append(item)
            members = groups.setdefault(item.group, [])
            if item.id not in members:
                members.append(item.id)
        number = {name: n for n, name in enumerate(groups)}
        group_of = np.full(max((i.label for i in items), default=-1) + 1, -1, dtype=np.int64)
        for item in items:
            group_of[item.label] = number[item.group]
        by_category: dict[str, list[int]] = {}
        for item in items:
            by_category.setdefault(item.category, []).append(item.label)
        return cls(photos, groups, {c: np.array(labels, dtype=np.int64) for c, labels in by_category.items()},
                   group_of, number, {p.label: n for ps in photos.values() for n, p in enumerate(ps)})


@dataclass(frozen=True)
class CatalogIndex:
    """One index version, loaded whole: the photos, their products and columns, and every category's index."""

    manifest: Manifest
    version_dir: Path
    items: dict[int, CatalogItem]
    categories: Mapping[str, CategoryVectors]
    products: Products
    columns: ColumnTable
    text: TextIndex | None = None
    meaning: Meaning | None = None  # the sentence model's side of a search by words; None: bm25 alone
    projection: Projection | None = None

    @classmethod
    def load(cls, version_dir: Path, text_model: TextModels | None = None, fusion: Fusion | None = None,
             open_vectors: VectorOpener | None = None) -> CatalogIndex:
        """The version at `version_dir`, its vectors opened by `open_vectors` (default: its Faiss files);
        TextModelMismatch where its text vectors came from another `text_model`."""
        manifest = read_manifest(version_dir)
        meaning = Meaning.load(version_dir, manifest, text_model, fusion or Fusion())
        projection = None
        if manifest.projection is not None:
            info = manifest.projection
            projection = Projection.load(version_dir / info.file, info.sha256, info.reduce, manifest.embedding_dim)
        items = read_items(version_dir)
        categories = (open_vectors or open_faiss)(manifest, version_dir, items)
        for name, index in categories.items():
            if index.dim != manifest.index_dim:
                raise ProjectionMismatch(f"Index version {manifest.version}: the {name} index holds {index.dim}-d "
                                         f"vectors, its manifest says {manifest.index_dim}. Build the index again.")
        loaded = cls.of(manifest, version_dir, items, categories, TextIndex.load(version_dir), meaning, projection)
        log.info("similarity loaded index %s: %s", loaded.version,
                 ", ".join(f"{name}={count}" for name, count in loaded.items_per_category().items()))
        return loaded

    @classmethod
    def of(cls, manifest: Manifest, version_dir: Path, items: list[CatalogItem],
           categories: Mapping[str, CategoryVectors], text: TextIndex | None = None,
           meaning: Meaning | None = None, projection: Projection | None = None) -> CatalogIndex:
        return cls(manifest, version_dir, {i.label: i for i in items}, categories, Products.of(items), ColumnTable(items),
                   text, meaning, projection)

    @property
    def version(self) -> str:
        return self.manifest.version

    def query_vector(self, embedding: np.ndarray) -> np.ndarray:
        """A model embedding (one, or one per row) in the indexes' space: projected by the version's own
        reduction, if it was built with one; as it is otherwise.

        Queries arrive as the model's embeddings and only here enter the reduced space, so no client
        can search a version with vectors projected another way.
        """
        if self.projection is None:
            return embedding
        expected = self.projection.input_dim
        if embedding.shape[-1] != expected or embedding.ndim > 2:
            raise WrongDimension(f"The embedding has {embedding.size} values; this index takes {expected}-d "
                                 f"embeddings (reduced to {self.projection.dim} by {self.projection.reduction}).")
        projected = self.projection.apply(embedding)
        return projected[0] if embedding.ndim == 1 else projected

    def items_per_category(self) -> dict[str, int]:
        """Photos per category."""
        return {name: len(index) for name, index in self.categories.items()}

    def filterable_columns(self) -> list[FilterableColumn]:
        return self.columns.described

    def parse_filters(self, where: list[str]) -> list[Filter]:
        return parse_filters(where, self.columns.columns)

    def item(self, item_id: str) -> CatalogItem:
        """A product's first photo, which carries its name and columns."""
        return self.photos(item_id)[0]

    def photos(self, item_id: str) -> list[CatalogItem]:
        try:
            return self.products.photos[item_id]
        except KeyError:
            raise UnknownItem("There is no catalogue item with this id.") from None

    def require_text(self) -> TextIndex:
        if self.text is None:
            raise NotReady(f"Index version {self.version} was built without a text index. Run `make index` again.")
        return self.text

    def category_index(self, category: str) -> CategoryVectors:
        index = self.categories.get(category)
        if index is None:
            raise UnknownCategory(
                f"Unknown category {category!r}. The catalogue has: {', '.join(sorted(self.categories))}.")
        return index

    def excluded_group_names(self, exclude_ids: frozenset[str], exclude_groups: frozenset[str]) -> frozenset[str]:
        """The variant groups left out: those named, and those of the products named."""
        groups = {self.items[p.label].group for i in exclude_ids for p in self.products.photos.get(i, [])}
        return frozenset(groups | exclude_groups)

    def allowed_labels(self, category: str, filters: list[Filter], exclude_ids: frozenset[str] = frozenset(),
                       exclude_groups: frozenset[str] = frozenset()) -> np.ndarray | None:
        """The category's labels that pass every filter and are not left out; None when that is all of them."""
        if not filters and not exclude_ids and not exclude_groups:
            return None
        labels = self.products.labels_by_category.get(category, np.zeros(0, np.int64))
        keep = self.columns.mask(filters)[labels] if filters else np.ones(len(labels), dtype=bool)
        groups = self.excluded_group_names(exclude_ids, exclude_groups)
        numbers = [self.products.group_number[g] for g in groups if g in self.products.group_number]
        if numbers:
            keep &= ~np.isin(self.products.group_of[labels], numbers)
        return np.asarray(labels[keep], dtype=np.int64)

    def search(self, category: str, vector: np.ndarray, k: int, exclude_ids: frozenset[str] = frozenset(), *,
               exclude_groups: frozenset[str] = frozenset(), where: list[str] | None = None,
               min_score: float = 0.0, q: str | None = None) -> list[Hit]:
        """The k best product groups of `category` for the query (one vector, or one per row), best first.

        `where` filters, the words `q` and the exclusions are applied inside Faiss; results below
        `min_score` are left out (0: none are).
        """
        index = self.category_index(category)
        filters = self.parse_filters(where or [])
        queries = vector.reshape(1, -1) if vector.ndim == 1 else vector
        if queries.ndim != 2 or queries.shape[1] != index.dim:
            raise WrongDimension(f"The embedding has {vector.size} values; this index holds {index.dim}-d vectors.")
        left_out = self.excluded_group_names(exclude_ids, exclude_groups)
        allowed = self.allowed_labels(category, filters, exclude_groups=left_out)
        matching = None
        if q is not None:
            matching = word_labels(self.require_text(), self.meaning, q, k, category,
                                   self.products.labels_by_category.get(category, np.zeros(0, np.int64)),
                                   self.products.group_of)
            allowed = matching if allowed is None else np.intersect1d(allowed, matching)
        restriction = Restriction(filters, left_out, matching, allowed)
        limit = len(index) if allowed is None else len(allowed)
        best: dict[int, tuple[int, float]] = {}  # group number -> its best (label, score)
        photos_wanted = min(limit, 2 * k)
        while True:
            best.clear()
            found = index.nearest(queries, photos_wanted, restriction)
            for label, score in found:
                best.setdefault(int(self.products.group_of[label]), (label, score))
            if len(best) >= k or photos_wanted >= limit or len(found) < photos_wanted:
                break
            photos_wanted = min(limit, photos_wanted * 4)
        # min_score 0 is "no cutoff": with REDUCE the vectors are centred, and a product less alike than the
        # catalogue's average photo scores below 0, yet still belongs in the k asked for.
        return [self._hit(label, score) for label, score in list(best.values())[:k] if min_score <= 0 or score >= min_score]

    def _hit(self, label: int, score: float) -> Hit:
        photo = self.items[label]
        product = self.products.photos[photo.id]
        return Hit(id=photo.id, name=product[0].name, category=photo.category, score=score, extra=product[0].extra,
                   group_id=photo.group, photo=self.products.photo_number[label], photos=len(product),
                   variants=len(self.products.groups[photo.group]))

    def text_search(self, q: str, k: int, category: str | None = None, where: list[str] | None = None) -> list[Hit]:
        """The k products best matching the words, one per variant group, that pass `where`; `category`
        narrows to one. By bm25, fused with the sentence model's ranking where the version has one
        (`lookalike.catalog.hybrid`); this embeds the words, so call it off the event loop."""
        if category is not None:
            self.category_index(category)
        filters = self.parse_filters(where or [])
        passes = self.columns.mask(filters) if filters else None
        text = self.require_text()
        group_of = self.products.group_of
        if self.meaning is None:
            matches = bm25_products(text, text.parse(q), k, category, passes, group_of)
        else:
            candidates = (self.products.labels_by_category.get(category, np.zeros(0, np.int64)) if category is not None
                          else np.fromiter(self.items, dtype=np.int64))
            matches = fused_products(text, self.meaning, q, k, candidates, category, passes, group_of,
                                     lambda label: self.items[label].name)
        return [self._hit(m.label, m.score).model_copy(update={"matched": m.matched}) for m in matches]

    def refine_text(self, q: str, k: int, like: list[str], unlike: list[str], weights: RocchioWeights, *,
                    category: str | None = None, where: list[str] | None = None) -> list[Hit]:
        """A search by words, refined by the shopper's marks and ranked by the vectors.

        The words' query vector is the mean of their top k products' vectors; Rocchio moves it
        toward the liked products and away from the unliked. It is searched in `category`, else in
        the categories of those products and the liked ones, and unliked products never come back.
        Words that match nothing start from the liked products alone.
        """
        top = self.text_search(q, k, category, where)
        liked, unliked = self.product_vectors(like), self.product_vectors(unlike)
        if not top and not like:
            return []  # nothing to start from, nothing to move toward
        start = self.product_vectors([hit.id for hit in top])
        query = start.mean(axis=0) if len(start) else np.zeros(liked.shape[1], np.float32)
        moved = rocchio(query, liked, unliked, weights)
        searched = [category] if category else sorted({hit.category for hit in top} | {self.item(i).category for i in like})
        hits = [hit for c in searched for hit in self.search(c, moved, k, frozenset(unlike), where=where)]
        return sorted(hits, key=lambda hit: hit.score, reverse=True)[:k]

    def product_vectors(self, item_ids: list[str]) -> np.ndarray:
        """One vector per product, the normalised mean of its photos' vectors: (len(item_ids), d).

        NotInCatalog (422, not 404: the request names it, the URL does not) for an id the index lacks.
        """
        vectors = []
        for item_id in item_ids:
            photos = self.products.photos.get(item_id)
            if not photos:
                raise NotInCatalog(f"There is no catalogue product with the id {item_id!r}.")
            mean = np.mean([self.categories[p.category].vector(p.label) for p in photos], axis=0)
            vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        dim = next(iter(self.categories.values())).dim if self.categories else 0
        return np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim)

    def similar_to(self, item_id: str, k: int, *, where: list[str] | None = None, min_score: float = 0.0) -> list[Hit]:
        """More like this: all of the product's stored photos as the query, its whole variant group left out."""
        photos = self.photos(item_id)
        index = self.categories[photos[0].category]
        vectors = np.stack([index.vector(p.label) for p in photos])
        return self.search(photos[0].category, vectors, k, exclude_groups=frozenset({photos[0].group}), where=where,
                           min_score=min_score)

    def thumbnail(self, item_id: str, photo: int = 0) -> Path:
        photos = self.photos(item_id)
        if not 0 <= photo < len(photos):
            raise UnknownItem(f"This product has {len(photos)} photo(s), numbered from 0.")
        return self.version_dir / photos[photo].thumbnail
