"""The job's torch steps run in a process of their own: the job itself never imports torch, and what goes
wrong in the child comes back as the same error, or as a clear one where the child died."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from indexing.torch_steps import export_source_network, run_step
from lookalike.catalog.layout import read_manifest
from lookalike.errors import TorchStepDied, WeightsUnavailable
from tests.support import REPO

JOB_IN_ITS_OWN_PROCESS = textwrap.dedent("""
    import sys
    from pathlib import Path
    from indexing.build import BuildPlan, build_index

    summary = build_index(BuildPlan(Path(sys.argv[1]), Path(sys.argv[2]), "random", precision="fp32",
                                    text_model="auto", torch_in_child=True))
    held = [m for m in ("torch", "torchvision", "transformers", "sentence_transformers") if m in sys.modules]
    print("indexed", summary.indexed, "held", held)
""")


def test_a_build_with_its_torch_steps_in_a_child_imports_no_torch_and_serves_the_same_model(
        small_catalog: Path, built_index: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", JOB_IN_ITS_OWN_PROCESS, str(small_catalog), str(tmp_path)],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "held []" in done.stdout, done.stdout
    built = read_manifest(sorted((tmp_path / "versions").iterdir())[-1])
    in_process = read_manifest(sorted((built_index / "versions").iterdir())[-1])
    assert built.model == in_process.model  # the same weights and preprocessing: the same model_id
    assert built.network is not None and built.text_model is not None
    assert "RANDOM WEIGHTS" in done.stderr  # said by the child, as loudly as by the job itself


def test_an_error_in_the_child_comes_back_as_itself(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable, match="neither imagenet, random, auto nor an existing .pth file"):
        run_step(True, export_source_network, str(tmp_path / "missing.pth"), "fp32", tmp_path / "network.onnx")


def test_a_child_that_dies_is_a_clear_error() -> None:
    with pytest.raises(TorchStepDied, match="ended without finishing"):
        run_step(True, os._exit, 9)
