"""Words found two ways and fused: bm25's exact terms, and a sentence model's meaning.

Each side ranks product groups (one per variant group): bm25 those whose text holds every word
(or a synonym), the sentence model those whose text lies nearest the words in meaning, down to a
least cosine. Reciprocal rank fusion joins the two lists:

    fused(product) = bm25_weight / (k + its bm25 rank) + meaning_weight / (k + its meaning rank)

(a side that did not find it adds nothing), scaled so that first on both sides is 1.0. Ranks, not
scores, are fused, so bm25's unbounded scores and cosines never need to agree on a scale. A product
whose name is exactly the words typed comes first whatever the fusion says. A word in no product's
text finds products through the meaning side alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.catalog.layout import TEXT_VECTORS
from lookalike.catalog.manifest import Manifest
from lookalike.catalog.text_embedding import TextEmbedder, TextModels, text_models_dir
from lookalike.catalog.text_index import Match, TextIndex, TextQuery
from lookalike.errors import NotReady, TextModelMismatch
from lookalike.text_query import words

log = logging.getLogger("lookalike.similarity")
MEANING = "meaning"
"""What `matched` says of a result the sentence model found."""


@dataclass(frozen=True)
class Fusion:
    """How the two lists are fused; the similarity service's TEXT_FUSION_* settings."""

    k: float = 60.0
    bm25_weight: float = 1.0
    meaning_weight: float = 1.0
    min_meaning: float = 0.0
    """Least cosine between the words and a product's text for the meaning side to propose it. Off by default:
    with all-MiniLM-L6-v2 no cut-off tells gibberish from a real word (`xqzt` reaches 0.29 on this catalogue,
    `davenport` 0.26, `sconce` 0.33), so a word the model cannot place gets its nearest guesses."""
    depth: int = 40
    """Products each side proposes (at least the k asked for)."""

    @property
    def best(self) -> float:
        """The fused score of a product first on both sides."""
        return (self.bm25_weight + self.meaning_weight) / (self.k + 1)


@dataclass(frozen=True)
class Meaning:
    """A version's text vectors (row = item label) and the model that made them, which embeds the queries."""

    embedder: TextEmbedder
    vectors: np.ndarray
    fusion: Fusion

    @classmethod
    def load(cls, version_dir: Path, manifest: Manifest, text_models: TextModels | None,
             fusion: Fusion) -> Meaning | None:
        """None where the version or the service has no text model (bm25 alone); TextModelMismatch where
        the version's vectors came from another model than the service's; NotReady where the version names
        no ONNX copy of its model (built before there was one) or the copy is gone."""
        built = manifest.text_model
        if text_models is None or built is None:
            if built is not None:
                log.info("version %s has %s text vectors; TEXT_MODEL is none, so words are searched by bm25 alone",
                         manifest.version, built.name)
            elif text_models is not None:
                log.info("version %s was built without a text model (TEXT_MODEL=none); words are searched by bm25 "
                         "alone", manifest.version)
            return None
        identity = text_models.identity
        if identity.refuses(built):
            known = f" (digest {identity.digest[:12]})" if identity.digest else ""
            raise TextModelMismatch(
                f"Index version {manifest.version}'s text vectors came from the text model {built.name} "
                f"(digest {built.digest[:12]}), but this service's TEXT_MODEL is {identity.name}{known}. "
                f"Re-index with --text-model {identity.name}, or set TEXT_MODEL={built.name} here.")
        if built.onnx_digest is None:
            raise NotReady(f"Index version {manifest.version} was built before query words were embedded by ONNX "
                           "Runtime: it names no ONNX copy of its text model. Run `make index` again.")
        embedder = text_models.embedder(text_models_dir(version_dir.parent.parent) / built.onnx_digest)
        if embedder.info.digest != built.digest:
            raise NotReady(f"Index version {manifest.version} names an ONNX copy of another text model than its "
                           f"own ({embedder.info.name}, digest {embedder.info.digest[:12]}). Run `make index` again.")
        return cls.of(version_dir, manifest, embedder, fusion)

    @classmethod
    def of(cls, version_dir: Path, manifest: Manifest, embedder: TextEmbedder, fusion: Fusion) -> Meaning:
        """The version's text vectors, read and checked, with the embedder of its queries."""
        built = embedder.info
        path = version_dir / TEXT_VECTORS
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise NotReady(f"Index version {manifest.version}'s {TEXT_VECTORS} cannot be read ({exc}). "
                           "Run `make index` again.") from None
        if vectors.ndim != 2 or vectors.shape[1] != built.dim:
            raise NotReady(f"Index version {manifest.version}'s {TEXT_VECTORS} holds {vectors.shape} values, "
                           f"not {built.dim}-d rows. Run `make index` again.")
        return cls(embedder, np.ascontiguousarray(vectors, dtype=np.float32), fusion)

    def nearest(self, vector: np.ndarray, k: int, labels: np.ndarray, group_of: np.ndarray) -> list[tuple[int, float]]:
        """The k groups nearest the words among `labels`, best first, as (their best label, cosine),
        none below the least cosine."""
        labels = labels[labels < len(self.vectors)]
        cosines = self.vectors[labels] @ vector
        close = cosines >= self.fusion.min_meaning
        labels, cosines = labels[close], cosines[close]
        best: dict[int, tuple[int, float]] = {}
        for at in np.argsort(-cosines, kind="stable"):
            best.setdefault(int(group_of[labels[at]]), (int(labels[at]), float(cosines[at])))
            if len(best) >= k:
                break
        return list(best.values())


def bm25_products(text: TextIndex, query: TextQuery, k: int, category: str | None, passes: np.ndarray | None,
                  group_of: np.ndarray) -> list[Match]:
    """The k best groups by bm25 alone, each by its best photo, that pass the filters (`passes`, by label)."""
    wanted = 4 * k
    while True:
        matches = text.search(query, wanted, category)
        best: dict[int, Match] = {}
        for match in matches:
            if passes is not None and not passes[match.label]:
                continue
            best.setdefault(int(group_of[match.label]), match)
        if len(best) >= k or len(matches) < wanted:
            return list(best.values())[:k]
        wanted *= 4


def fused_products(text: TextIndex, meaning: Meaning, q: str, k: int, candidates: np.ndarray,
                   category: str | None, passes: np.ndarray | None, group_of: np.ndarray,
                   name_of: Callable[[int], str]) -> list[Match]:
    """The k best groups by bm25 and meaning fused; `candidates` the labels the meaning side may propose
    (the category's, or all). The words are embedded once, after bm25 has checked them (a stop-word-only
    search is refused before any model runs)."""
    query = text.parse(q)
    fusion = meaning.fusion
    depth = max(k, fusion.depth)
    lexical = bm25_products(text, query, depth, category, passes, group_of)
    allowed = candidates if passes is None else candidates[passes[candidates]]
    semantic = meaning.nearest(meaning.embedder.embed_query(q), depth, allowed, group_of)
    fused: dict[int, float] = {}
    label_of: dict[int, int] = {}
    matched: dict[int, list[str]] = {}
    for rank, match in enumerate(lexical, start=1):
        group = int(group_of[match.label])
        fused[group] = fusion.bm25_weight / (fusion.k + rank)
        label_of[group], matched[group] = match.label, list(match.matched)
    for rank, (label, _) in enumerate(semantic, start=1):
        group = int(group_of[label])
        fused[group] = fused.get(group, 0.0) + fusion.meaning_weight / (fusion.k + rank)
        label_of.setdefault(group, label)
        matched.setdefault(group, []).append(MEANING)
    typed = words(q)
    exact = {group for group, label in label_of.items() if words(name_of(label)) == typed}
    order = sorted(fused, key=lambda group: (group not in exact, -fused[group]))[:k]
    return [Match(label_of[group], 1.0 if group in exact else min(1.0, fused[group] / fusion.best), matched[group])
            for group in order]


def word_labels(text: TextIndex, meaning: Meaning | None, q: str, k: int, category: str,
                candidates: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """The photos of `category` a photo search narrowed by the words `q` may return.

    Those bm25 matches where there are any, so words found in the catalogue (a product's name)
    stay as strict a filter as they were; where there are none, the photos of the products
    nearest the words in meaning, so a word in no product's text still narrows to something.
    """
    matching = text.matching_labels(text.parse(q), category)
    if meaning is None or len(matching):
        return matching
    near = meaning.nearest(meaning.embedder.embed_query(q), max(k, meaning.fusion.depth), candidates, group_of)
    groups = np.array([group_of[label] for label, _ in near], dtype=np.int64)
    return np.asarray(candidates[np.isin(group_of[candidates], groups)], dtype=np.int64)
