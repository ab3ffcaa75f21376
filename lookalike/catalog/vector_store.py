"""Where an index version's vectors live: the seam between the catalogue code and a vector engine.

`faiss` (the default) keeps one Faiss file per category inside the version directory and
searches it in the similarity service's own memory: nothing to run beside it. `milvus` writes
the vectors to a Milvus collection named after the version, for a catalogue that outgrows one
machine; the rest of the version (manifest, items, head, text index, thumbnails) stays on disk
either way. Both answer the same `CategoryVectors` questions, so search, filters, variant groups,
refinement and "more like this" are written once, in `lookalike.catalog.index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from lookalike.where import Filter


class VectorStoreKind(StrEnum):
    FAISS = "faiss"
    MILVUS = "milvus"


class VectorStoreRecord(BaseModel):
    """What a version's manifest says about where its vectors are."""

    kind: VectorStoreKind = VectorStoreKind.FAISS
    collection: str | None = Field(None, description="milvus: the collection holding this version's vectors.")
    index_type: str = Field("Flat", description="The index the engine searches: a Faiss factory string, or "
                                                "Milvus's FLAT, HNSW or IVF_FLAT.")
    index_parameters: dict[str, int] = Field(default_factory=dict, description="milvus: what the index was built with.")
    search_parameters: dict[str, int] = Field(default_factory=dict, description="milvus: what each search is sent.")


@dataclass(frozen=True)
class Restriction:
    """Which photos a search may return, said two ways: as the rules, and as the labels that pass them.

    An engine that filters inside itself (Milvus) turns `filters`, `excluded_groups` and `labels`
    into its own expression; one that filters by id (Faiss) takes `allowed`, worked out from the
    same rules over the version's column table only for such an engine (`filters_by_label`).
    None everywhere means every photo of the category.
    """

    filters: Sequence[Filter] = ()
    excluded_groups: frozenset[str] = frozenset()
    labels: np.ndarray | None = None
    """Only these labels (the photos the words `q` match), or None."""
    allowed: np.ndarray | None = None
    """The category's labels passing all of the above; None when that is every one of them."""


class CategoryVectors(Protocol):
    """One category's vectors, whichever engine holds them."""

    @property
    def filters_by_label(self) -> bool:
        """Whether it takes the restriction as `allowed` labels (Faiss), which are then worked out for it."""
        ...

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def nearest(self, queries: np.ndarray, k: int, restriction: Restriction) -> list[tuple[int, float]]:
        """The k nearest (label, score) pairs, best first; a label scores its best over the query rows."""
        ...

    def vector(self, label: int) -> np.ndarray: ...
