"""Query words embedded without torch: the ONNX copy of all-MiniLM-L6-v2, run by ONNX Runtime and `tokenizers`,
gives sentence-transformers' own vectors (the reference, loaded here with torch, as only the tests and the job may)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from evaluation.text import read_text_queries
from lookalike.catalog.hybrid import Fusion, Meaning
from lookalike.catalog.layout import TEXT_MODELS, TEXT_VECTORS
from lookalike.catalog.text_embedding import (
    TEXT_MODEL_FILE,
    TextEmbedder,
    TextModelIdentity,
    TextModels,
    packaged_model_dir,
    text_model_identity,
)
from lookalike.errors import NotReady
from tests.lookalike.catalog.test_hybrid import manifest
from tests.support import REPO

QUERY_SETS = [REPO / "evaluation" / "data" / "text_queries.csv", REPO / "evaluation" / "data" / "absent_words.csv"]


@pytest.fixture(scope="module")
def sentence_transformers_vectors() -> Callable[[list[str]], np.ndarray]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model_dir()), device="cpu", local_files_only=True)
    return lambda texts: model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)


def shipped_queries() -> list[str]:
    return [q.query for path in QUERY_SETS for q in read_text_queries(path)]


def test_the_shipped_query_words_match_sentence_transformers_to_a_cosine_of_0_9999(
        text_model: TextEmbedder, sentence_transformers_vectors: Callable[[list[str]], np.ndarray]) -> None:
    queries = shipped_queries()
    assert len(queries) > 40 and "chesterfield" in queries
    reference = sentence_transformers_vectors(queries)
    one_by_one = np.stack([text_model.embed_query(q) for q in queries])  # as the service embeds them
    batched = text_model.embed_texts(queries)  # as the job embeds a catalogue's texts
    assert (one_by_one * reference).sum(axis=1).min() >= 0.9999
    assert (batched * reference).sum(axis=1).min() >= 0.9999
    assert np.allclose(np.linalg.norm(one_by_one, axis=1), 1.0, atol=1e-5)


def test_a_long_text_is_read_to_256_word_pieces_as_sentence_transformers_reads_it(
        text_model: TextEmbedder, sentence_transformers_vectors: Callable[[list[str]], np.ndarray]) -> None:
    """The tokenizer.json of all-MiniLM-L6-v2 truncates at 128; the model reads 256 (sentence_bert_config.json)."""
    assert text_model.config.max_length == 256
    words = " ".join(f"sofa{n} chair{n}" for n in range(150))  # far more than 256 pieces, differing after 128
    reference = sentence_transformers_vectors([words])[0]
    assert float(text_model.embed_query(words) @ reference) >= 0.9999


def test_a_version_built_before_the_onnx_copy_is_refused_with_the_reason(
        text_model: TextEmbedder, tmp_path: Path) -> None:
    """Never served with vectors the service cannot make queries for: the service says to re-index."""
    version_dir = tmp_path / "versions" / "old"
    version_dir.mkdir(parents=True)
    np.save(version_dir / TEXT_VECTORS, np.zeros((3, 384), np.float32))
    built_before = text_model.info.model_copy(update={"onnx_digest": None})
    models = TextModels(TextModelIdentity(text_model.info.name, text_model.info.digest))
    with pytest.raises(NotReady) as refused:
        Meaning.load(version_dir, manifest(built_before, []), models, Fusion())
    assert "built before query words were embedded by ONNX Runtime" in refused.value.message
    assert "make index" in refused.value.message


def test_a_missing_or_altered_onnx_copy_is_refused(text_model: TextEmbedder, tmp_path: Path) -> None:
    version_dir = tmp_path / "versions" / "v1"
    version_dir.mkdir(parents=True)
    np.save(version_dir / TEXT_VECTORS, np.zeros((3, 384), np.float32))
    models = TextModels(TextModelIdentity(text_model.info.name, text_model.info.digest))
    with pytest.raises(NotReady, match="is missing"):
        Meaning.load(version_dir, manifest(text_model.info, []), models, Fusion())
    copy = tmp_path / TEXT_MODELS / text_model.directory.name
    shutil.copytree(text_model.directory, copy)
    loaded = Meaning.load(version_dir, manifest(text_model.info, []), models, Fusion())
    assert loaded is not None and loaded.embedder.info == text_model.info
    described = json.loads((copy / TEXT_MODEL_FILE).read_text())
    (copy / TEXT_MODEL_FILE).write_text(json.dumps({**described, "max_length": 128}))
    with pytest.raises(NotReady, match="does not match its digest"):
        TextModels(models.identity).embedder(copy)


def test_where_the_models_files_are_not_here_the_name_guards_the_version(text_model: TextEmbedder,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The serving image holds no copy of the source model, only the index's ONNX copy: TEXT_MODEL=auto then
    knows all-MiniLM-L6-v2 by name, and a version another model made is still refused."""
    monkeypatch.setattr("lookalike.catalog.text_embedding.packaged_model_dir", lambda: None)
    identity = text_model_identity("auto")
    assert identity == TextModelIdentity("sentence-transformers/all-MiniLM-L6-v2", None)
    assert not identity.refuses(text_model.info)
    other = text_model.info.model_copy(update={"name": "sentence-transformers/paraphrase-MiniLM-L3-v2"})
    assert identity.refuses(other)
    assert text_model_identity("none") is None
    known = text_model_identity(str(packaged_model_dir()))
    assert known is not None and known.digest == text_model.info.digest
