"""The sentence model's ONNX copy: exported once by the indexing job, kept under the index root by digest.

The similarity service embeds query words without torch (`lookalike.catalog.text_embedding.TextEmbedder`,
ONNX Runtime and `tokenizers`); this module, the job's alone, makes what it reads. torch and transformers
export the model's transformer (token ids in, token vectors out) to ONNX at fp32; the pooling and the
normalisation sentence-transformers adds are done on the token vectors by the embedder itself. The copy
goes into `<index>/text-models/<digest>/`, named by its content's digest, so every version that uses
the same model names the one folder (90 MB for all-MiniLM-L6-v2), and is exported only when no copy of
that model (by the source's digest, its identity) is there yet.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from pathlib import Path

from indexing.index_extra import require_index_extra
from indexing.torch_steps import run_step
from lookalike.catalog.layout import IndexLayout
from lookalike.catalog.text_embedding import (
    ONNX_MODEL,
    TEXT_MODEL_FILE,
    TOKENIZER,
    OnnxTextModel,
    TextEmbedder,
    TextModelIdentity,
    model_digest,
    open_onnx_copy,
    resolve_text_model,
    text_models_dir,
)
from lookalike.errors import NotReady, TextModelUnavailable

log = logging.getLogger("lookalike.indexing")

OPSET = 17
# sentence-transformers modules an ONNX copy reproduces: the transformer (exported), then mean or CLS pooling
# and normalisation (done by the embedder). A Dense layer or another module would be left out: refused.
_MODULES = {"sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize"}


def _json(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def describe_source(name: str, directory: Path, digest: str, dim: int) -> OnnxTextModel:
    """What the copy must do to embed as sentence-transformers does with the model in `directory`."""
    modules = json.loads((directory / "modules.json").read_text()) if (directory / "modules.json").is_file() else []
    unsupported = sorted({m["type"] for m in modules if m.get("type") not in _MODULES})
    if unsupported:
        raise TextModelUnavailable(f"TEXT_MODEL={name}: its modules {', '.join(unsupported)} cannot be served through "
                                   "ONNX Runtime here (a transformer, mean or CLS pooling, and normalisation can).")
    pooling_dir = next((directory / m["path"] for m in modules if m.get("type", "").endswith(".Pooling")), None)
    pooling = _json(pooling_dir / "config.json") if pooling_dir is not None else {"pooling_mode_mean_tokens": True}
    if pooling.get("pooling_mode_cls_token"):
        mode = "cls"
    elif pooling.get("pooling_mode_mean_tokens", True) and not any(
            pooling.get(k) for k in ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")):
        mode = "mean"
    else:
        raise TextModelUnavailable(f"TEXT_MODEL={name}: its pooling ({pooling}) is neither mean nor CLS pooling.")
    # sentence-transformers reads max_seq_length from sentence_bert_config.json (256 for all-MiniLM-L6-v2),
    # not the tokenizer file's truncation (128 there): the copy must truncate where the model does.
    limit = _json(directory / "sentence_bert_config.json").get("max_seq_length") \
        or _json(directory / "tokenizer_config.json").get("model_max_length") or 512
    positions = _json(directory / "config.json").get("max_position_embeddings") or 512
    max_length = min(int(str(limit)), int(str(positions)))
    return OnnxTextModel(name=name, digest=digest, dim=dim, max_length=max_length, pooling=mode)


def export_onnx_copy(name: str, directory: Path, digest: str, store: Path) -> Path:
    """Export the model in `directory` to `store/<content digest>/` and answer that folder.

    Traced with a padded batch, so the attention mask's path is the one recorded (a batch without padding
    could let the exporter leave the mask out). Written in a hidden folder, then renamed into place.
    """
    require_index_extra("Exporting the text model to ONNX")
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lookalike.onnx_params import export_appending_weights

    try:
        network = AutoModel.from_pretrained(str(directory), attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        raise TextModelUnavailable(f"TEXT_MODEL={name}: {directory} holds no loadable transformer ({exc}).") from None
    dim = int(network.config.hidden_size)
    described = describe_source(name, directory, digest, dim)

    class TokenVectors(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    store.mkdir(parents=True, exist_ok=True)
    work = store / f".export-{secrets.token_hex(4)}"
    work.mkdir()
    try:
        if (directory / TOKENIZER).is_file():
            shutil.copyfile(directory / TOKENIZER, work / TOKENIZER)
        else:  # a model with only a slow tokenizer's files: transformers converts it
            AutoTokenizer.from_pretrained(str(directory)).backend_tokenizer.save(str(work / TOKENIZER))
        ids = torch.ones((2, 8), dtype=torch.long)
        mask = torch.ones((2, 8), dtype=torch.long)
        mask[1, 5:] = 0
        names = ["input_ids", "attention_mask", "token_type_ids"]
        # The tracer's notes on transformers' shape checks hold for every batch the embedder sends: silenced.
        export_appending_weights(TokenVectors(network), (ids, mask, torch.zeros_like(ids)), work / ONNX_MODEL,
                                 input_names=names, output_names=["token_embeddings"], opset_version=OPSET,
                                 dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "token_embeddings"]})
        (work / TEXT_MODEL_FILE).write_text(described.model_dump_json(indent=2))
        final = store / model_digest(work)
        if final.is_dir():
            shutil.rmtree(work)
        else:
            os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("text model %s exported to ONNX: %s", name, final)
    return final


def find_onnx_copy(store: Path, identity: TextModelIdentity) -> Path | None:
    """A copy of the model already in the store (by the source's digest), intact; None where there is none."""
    if not store.is_dir():
        return None
    for folder in sorted(store.iterdir()):
        if folder.name.startswith(".") or not (folder / TEXT_MODEL_FILE).is_file():
            continue
        try:
            described = OnnxTextModel.model_validate_json((folder / TEXT_MODEL_FILE).read_text())
        except ValueError:
            continue
        if described.digest == identity.digest and model_digest(folder) == folder.name:
            return folder
    return None


def text_model_for_index(setting: str, index_root: Path, threads: int | None = None) -> TextEmbedder | None:
    """The ONNX copy of the model TEXT_MODEL names, in the index root's store (exported there if missing),
    loaded with `threads` (None: as many as ONNX Runtime likes); None for bm25 alone."""
    folder = text_copy_for_index(setting, index_root)
    return opened(folder, threads) if folder is not None else None


def text_copy_for_index(setting: str, index_root: Path, *, in_child: bool = False) -> Path | None:
    """The folder of that copy, exported first if missing (in a process of its own where `in_child`: see
    `indexing.torch_steps`); None for bm25 alone."""
    resolved = resolve_text_model(setting)
    if resolved is None:
        return None
    name, directory = resolved
    digest = model_digest(directory)
    store = text_models_dir(Path(index_root))
    return find_onnx_copy(store, TextModelIdentity(name, digest)) \
        or run_step(in_child, export_onnx_copy, name, directory, digest, store)


def place_in_store(embedder: TextEmbedder, index_root: Path) -> None:
    """A copy loaded from elsewhere (a test's, an evaluation's) put into this root's store: linked, else copied."""
    target = text_models_dir(Path(index_root)) / embedder.directory.name
    if target.is_dir() or embedder.directory.resolve() == target.resolve():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".place-{secrets.token_hex(4)}"

    def link_or_copy(source: str, destination: str) -> None:
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)

    shutil.copytree(embedder.directory, work, copy_function=link_or_copy)
    os.replace(work, target)


def forget_unnamed_copies(layout: IndexLayout) -> list[str]:
    """Remove the copies no published version names any more (after pruning), and what a killed job left half
    written (`.export-*`, `.place-*`); answers their names. Under the index root's lock: no job is writing."""
    store = text_models_dir(layout.root)
    if not store.is_dir():
        return []
    named = set()
    for version in layout.published():
        manifest = json.loads((layout.versions / version / "manifest.json").read_text())
        text_model = manifest.get("text_model") or {}
        if text_model.get("onnx_digest"):
            named.add(text_model["onnx_digest"])
    gone = sorted(folder.name for folder in store.iterdir() if folder.name not in named)
    for name in gone:
        shutil.rmtree(store / name, ignore_errors=True)
    return gone


def opened(folder: Path, threads: int | None) -> TextEmbedder:
    try:
        return open_onnx_copy(folder, threads or 0)
    except NotReady as exc:
        raise TextModelUnavailable(exc.message) from None
