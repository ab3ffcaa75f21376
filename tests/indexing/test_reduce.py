"""REDUCE refused before any photo is embedded when it cannot be learned; the end-to-end tests are in
tests/gateway/test_reduced_search.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexing.__main__ import main
from indexing.build import BuildPlan, build_index
from lookalike.errors import BadReduction


def test_more_dimensions_than_the_catalogue_spans_is_refused_before_embedding(small_catalog: Path,
                                                                              tmp_path: Path) -> None:
    with pytest.raises(BadReduction, match="at most 29 dimensions"):
        build_index(BuildPlan(small_catalog, tmp_path / "index", "random", precision="fp32", reduce="pca:64"))
    assert not (tmp_path / "index" / "versions").exists()


def test_the_command_line_says_what_reduce_accepts(small_catalog: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:  # a bad setting ends the command line as argparse does
        main(["--catalog", str(small_catalog), "--index", str(tmp_path / "index"), "--weights", "random",
              "--reduce", "svd:64"])
    assert refused.value.code == 2
    assert "none (the default), pca:D or pca-whiten:D" in capsys.readouterr().err
