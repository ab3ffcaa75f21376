"""The similarity service's job: the catalogue's embeddings, one Faiss index per category.

Vectors are L2-normalised, so inner product is cosine similarity. Each index is an
`IndexIDMap2`, whose ids are the items' labels in `items.json`, and which can hand a stored
vector back (for "more like this").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from lookalike.contracts import Hit
from lookalike.errors import NotFound, NotReady, Unprocessable
from lookalike.index_layout import CatalogItem, IndexLayout, Manifest, index_file, read_items, read_manifest

log = logging.getLogger("lookalike.similarity")


class UnknownCategory(Unprocessable):
    code = "unknown_category"


class UnknownItem(NotFound):
    code = "unknown_item"


class WrongDimension(Unprocessable):
    code = "wrong_dimension"


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


class UnusableIndexType(ValueError):
    """A Faiss factory string that Faiss cannot build."""


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

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest (label, score) pairs, best first."""
        scores, labels = self.index.search(vector.reshape(1, -1).astype(np.float32), min(k, len(self)))
        return [(int(label), float(score)) for label, score in zip(labels[0], scores[0]) if label >= 0]

    def vector(self, label: int) -> np.ndarray:
        return self.index.reconstruct(label)


@dataclass(frozen=True)
class CatalogIndex:
    """One index version, loaded whole: the items and every category's index."""

    manifest: Manifest
    version_dir: Path
    items: dict[int, CatalogItem]
    items_by_id: dict[str, CatalogItem]
    categories: dict[str, CategoryIndex]

    @classmethod
    def load(cls, version_dir: Path) -> CatalogIndex:
        manifest = read_manifest(version_dir)
        items = read_items(version_dir)
        categories = {c.name: CategoryIndex.load(index_file(version_dir, c.name)) for c in manifest.categories}
        loaded = cls(manifest, version_dir, {i.label: i for i in items}, {i.id: i for i in items}, categories)
        log.info("similarity loaded index %s: %s", loaded.version,
                 ", ".join(f"{name}={count}" for name, count in loaded.items_per_category().items()))
        return loaded

    @property
    def version(self) -> str:
        return self.manifest.version

    def items_per_category(self) -> dict[str, int]:
        return {name: len(index) for name, index in self.categories.items()}

    def item(self, item_id: str) -> CatalogItem:
        try:
            return self.items_by_id[item_id]
        except KeyError:
            raise UnknownItem("There is no catalogue item with this id.") from None

    def search(self, category: str, vector: np.ndarray, k: int, exclude_ids: frozenset[str] = frozenset()) -> list[Hit]:
        index = self.categories.get(category)
        if index is None:
            raise UnknownCategory(
                f"Unknown category {category!r}. The catalogue has: {', '.join(sorted(self.categories))}.")
        if vector.shape != (index.dim,):
            raise WrongDimension(f"The embedding has {vector.size} values; this index holds {index.dim}-d vectors.")
        hits = []
        for label, score in index.search(vector, k + len(exclude_ids)):
            item = self.items[label]
            if item.id not in exclude_ids:
                hits.append(Hit(id=item.id, name=item.name, category=item.category, score=score, extra=item.extra))
        return hits[:k]

    def similar_to(self, item_id: str, k: int) -> list[Hit]:
        """More like this: the item's own stored vector as the query, the item left out."""
        item = self.item(item_id)
        vector = self.categories[item.category].vector(item.label)
        return self.search(item.category, vector, k, frozenset({item.id}))

    def thumbnail(self, item_id: str) -> Path:
        return self.version_dir / self.item(item_id).thumbnail
