"""The indexing job embeds each item's words with the sentence model (TEXT_MODEL), and a re-index embeds only
the texts that changed: the real all-MiniLM-L6-v2, offline, beside `random` photo weights."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexing.__main__ import IndexingCommandLine, format_summary
from indexing.build import BuildPlan, build_index
from lookalike.catalog.layout import TEXT_VECTORS, read_items, read_manifest
from lookalike.catalog.text_embedding import TextEmbedder, item_text
from lookalike.catalog.text_index import text_fields
from lookalike.settings import read_command_line
from tests.support import write_csv


def rename(catalog: Path, product: str, name: str) -> None:
    with open(catalog / "products.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    write_csv(catalog / "products.csv", [{**r, "name": name} if r["id"] == product else r for r in rows], list(rows[0]))


def test_a_version_holds_each_items_text_vector_and_the_models_identity_and_a_reindex_reuses_them(
        small_catalog: Path, tmp_path: Path, text_model: TextEmbedder) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(small_catalog, catalog)
    root = tmp_path / "index"

    first = build_index(BuildPlan(catalog, root, "random", precision="fp32", text_model=text_model))
    manifest, items = read_manifest(first.version_dir), read_items(first.version_dir)
    assert manifest.text_model == text_model.info and first.text_model == text_model.info
    assert text_model.info.onnx_digest == text_model.directory.name  # the copy the service embeds queries with
    vectors = np.load(first.version_dir / TEXT_VECTORS)
    assert vectors.shape == (len(items), 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    texts = [item_text(i, text_fields(items), {}) for i in items]
    assert texts[0] == f"{items[0].name}. {items[0].category}"
    assert np.allclose(vectors[5], text_model.embed_texts([texts[5]])[0], atol=1e-5)  # row = label
    assert (first.text_embedded, first.text_reused) == (len(set(texts)), 0)  # a product's photos share one text
    assert f"Text model: {text_model.info.name} (384-d" in format_summary(first)

    again = build_index(BuildPlan(catalog, root, "random", precision="fp32", text_model=text_model))
    assert (again.text_embedded, again.text_reused) == (0, len(set(texts)))
    assert np.array_equal(np.load(again.version_dir / TEXT_VECTORS), vectors)

    renamed = items[0].id
    rename(catalog, renamed, "BRIMNES chesterfield sofa bed")
    changed = build_index(BuildPlan(catalog, root, "random", precision="fp32", text_model=text_model))
    assert (changed.text_embedded, changed.text_reused) == (1, len(set(texts)) - 1)
    after = np.load(changed.version_dir / TEXT_VECTORS)
    same = [i.label for i in items if i.id != renamed]
    assert np.array_equal(after[same], vectors[same]) and not np.allclose(after[0], vectors[0])


def test_text_model_none_builds_for_bm25_alone(small_catalog: Path, tmp_path: Path) -> None:
    summary = build_index(BuildPlan(small_catalog, tmp_path / "index", "random", precision="fp32", text_model="none"))
    assert read_manifest(summary.version_dir).text_model is None and summary.text_model is None
    assert not (summary.version_dir / TEXT_VECTORS).exists()
    assert "Text model: none (words are searched by bm25 alone)" in format_summary(summary)


def test_the_flag_beats_the_text_model_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXT_MODEL", "auto")
    assert read_command_line(IndexingCommandLine, [], prog="t").text_model == "auto"
    assert read_command_line(IndexingCommandLine, ["--text-model", "none"], prog="t").text_model == "none"
