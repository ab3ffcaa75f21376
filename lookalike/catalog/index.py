"""One index version, loaded whole: `CatalogIndex`, the facade the similarity service searches.

It joins the version's parts: its items and products (`lookalike.catalog.products`), its column
table for filters, its text index, and every category's vectors in whichever engine holds them
(`lookalike.catalog.faiss_store`, `lookalike.catalog.milvus_store`). A search asks the engine for
more photos until it holds `k` product groups. Filters and exclusions reach Faiss as the labels
allowed, worked out here only for an engine that filters by label; Milvus turns the same rules into
its own expression.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.catalog.faiss_store import open_faiss
from lookalike.catalog.filters import ColumnTable
from lookalike.catalog.hybrid import Fusion, Meaning, bm25_products, fused_products, word_labels
from lookalike.catalog.layout import read_items, read_manifest
from lookalike.catalog.manifest import CatalogItem, Manifest
from lookalike.catalog.products import Products
from lookalike.catalog.projection import Projection
from lookalike.catalog.refine import RocchioWeights, rocchio
from lookalike.catalog.text_embedding import TextModels
from lookalike.catalog.text_index import TextIndex
from lookalike.catalog.vector_store import CategoryVectors, Restriction
from lookalike.contracts import FilterableColumn, Hit
from lookalike.errors import (
    NotInCatalog,
    NotReady,
    ProjectionMismatch,
    UnknownCategory,
    UnknownItem,
    WrongDimension,
)
from lookalike.where import Filter, parse_filters

log = logging.getLogger("lookalike.similarity")


VectorOpener = Callable[[Manifest, Path, list[CatalogItem]], Mapping[str, CategoryVectors]]
"""Opens a version's vectors, per category, wherever its manifest says they are."""


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
        matching = None
        if q is not None:
            matching = word_labels(self.require_text(), self.meaning, q, k, category,
                                   self.products.labels_by_category.get(category, np.zeros(0, np.int64)),
                                   self.products.group_of)
        allowed = None
        if index.filters_by_label:  # Faiss; Milvus filters by the rules themselves
            allowed = self.allowed_labels(category, filters, exclude_groups=left_out)
            if matching is not None:
                allowed = matching if allowed is None else np.intersect1d(allowed, matching)
        restriction = Restriction(filters, left_out, matching, allowed)
        limit = len(index) if allowed is None else len(allowed)
        if matching is not None:
            limit = min(limit, len(matching))
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
