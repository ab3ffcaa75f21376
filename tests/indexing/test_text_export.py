"""The sentence model's ONNX copy: exported once, kept under the index root by its content's digest, named by
each version's manifest, shared by the versions that use it, forgotten when none does; and a job run where
torch is missing (a serving install) stops with what to install."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from indexing.__main__ import main
from indexing.build import BuildPlan, build_index
from indexing.index_extra import require_index_extra
from indexing.text_export import forget_unnamed_copies, text_model_for_index
from lookalike.catalog.layout import TEXT_MODELS, IndexLayout, read_manifest
from lookalike.catalog.text_embedding import TextEmbedder, model_digest
from lookalike.errors import IndexExtraMissing


def test_versions_share_one_copy_named_by_its_digest_and_the_manifest_names_it(
        small_catalog: Path, tmp_path: Path, text_model: TextEmbedder) -> None:
    root = tmp_path / "index"
    first = build_index(BuildPlan(small_catalog, root, "random", precision="fp32", text_model=text_model))
    second = build_index(BuildPlan(small_catalog, root, "random", precision="fp32", text_model=text_model))
    copies = [p for p in (root / TEXT_MODELS).iterdir() if not p.name.startswith(".")]
    assert [p.name for p in copies] == [text_model.directory.name]
    assert model_digest(copies[0]) == copies[0].name  # content-addressed
    for summary in (first, second):
        built = read_manifest(summary.version_dir).text_model
        assert built is not None and built.onnx_digest == copies[0].name and built.digest == text_model.info.digest


def test_the_job_reuses_a_copy_of_the_same_model_and_forgets_copies_no_version_names_and_leftovers(
        text_model: TextEmbedder, tmp_path: Path) -> None:
    root = tmp_path / "index"
    store = root / TEXT_MODELS
    shutil.copytree(text_model.directory, store / text_model.directory.name, copy_function=os.link)
    reused = text_model_for_index("auto", root)  # finds the copy by the source model's digest: no export
    assert reused is not None and reused.directory == store / text_model.directory.name
    (store / ".export-1a2b3c4d").mkdir()  # what a killed job left half written
    assert forget_unnamed_copies(IndexLayout(root)) == [".export-1a2b3c4d", text_model.directory.name]
    assert list(store.iterdir()) == []  # no version names the copy


def test_without_torch_the_job_says_to_install_the_index_extra(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str],
                                                               small_catalog: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails, as in a serving install
    with pytest.raises(IndexExtraMissing, match=r"pip install 'lookalike\[index\]'"):
        require_index_extra()
    assert main(["--catalog", str(small_catalog), "--index", str(tmp_path / "index")]) == 2
    error = capsys.readouterr().err
    assert "needs torch" in error and "lookalike[index]" in error
    assert not (tmp_path / "index").exists()
