"""The Faiss engine: one `IndexIDMap2` per category, in the version directory, searched in the service's memory.

Vectors are L2-normalised, so inner product is cosine similarity. Each index's ids are the photos'
labels in `items.json`, and it can hand a stored vector back (for "more like this"). Filters and
exclusions reach it as the set of labels allowed (`Restriction.allowed`), which Faiss applies inside
the search (an `IDSelector`). `lookalike.catalog.milvus_store` is the other engine.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from lookalike.catalog.layout import index_file
from lookalike.catalog.manifest import CatalogItem, Manifest
from lookalike.catalog.vector_store import CategoryVectors, Restriction, VectorStoreKind
from lookalike.errors import IndexMismatch, UnusableIndexType

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

    @property
    def filters_by_label(self) -> bool:
        """It takes a search's restriction as the labels allowed (`Restriction.allowed`)."""
        return True

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


def open_faiss(manifest: Manifest, version_dir: Path, items: list[CatalogItem]) -> dict[str, CategoryVectors]:
    """The version's Faiss files; a version published to another engine is refused with what to set."""
    store = manifest.vector_store
    if store is not None and store.kind != VectorStoreKind.FAISS:
        raise IndexMismatch(f"Index version {manifest.version} keeps its vectors in {store.kind} (collection "
                            f"{store.collection}), but this service reads Faiss files: set VECTOR_STORE={store.kind} "
                            "and its connection settings, or re-index with VECTOR_STORE=faiss.")
    return {c.name: CategoryIndex.load(index_file(version_dir, c.name)) for c in manifest.categories}
