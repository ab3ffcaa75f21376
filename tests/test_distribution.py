"""Installation says what serving needs: the base distribution (`pip install lookalike`, `pip install .`) pulls
no torch, torchvision, transformers or sentence-transformers, not even through a dependency; the `index`
extra adds the indexing job's. Read from the checkout's own metadata, as pip builds it (`--dry-run --report`)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import REPO

JOB_ONLY = {"torch", "torchvision", "transformers", "sentence-transformers"}


@pytest.fixture(scope="module")
def requires_dist(tmp_path_factory: pytest.TempPathFactory) -> list[Requirement]:
    report = tmp_path_factory.mktemp("pip") / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "--report", str(report), str(REPO)], check=True, timeout=300)
    (installed,) = json.loads(Path(report).read_text())["install"]
    assert installed["metadata"]["name"] == "lookalike"
    return [Requirement(text) for text in installed["metadata"]["requires_dist"]]


def wanted(requirements: list[Requirement], extra: str) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements
            if r.marker is None or r.marker.evaluate({"extra": extra})}


def closure(names: set[str]) -> set[str]:
    """Every distribution `names` pull in, transitively, by the installed versions' own Requires-Dist."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for text in metadata.distribution(name).requires or []:
            dependency = Requirement(text)
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(dependency.name))
    return found


def test_the_base_distribution_pulls_no_torch_torchvision_transformers_or_sentence_transformers(
        requires_dist: list[Requirement]) -> None:
    base = wanted(requires_dist, extra="")
    assert base & JOB_ONLY == set()
    assert {"onnxruntime", "tokenizers", "faiss-cpu", "fastapi"} <= base  # what serving runs on
    assert closure(base) & JOB_ONLY == set(), "a base dependency pulls a job-only library"


def test_the_index_extra_adds_the_jobs_torch_torchvision_and_sentence_transformers(
        requires_dist: list[Requirement]) -> None:
    assert {"torch", "torchvision", "sentence-transformers"} <= wanted(requires_dist, extra="index")


def test_make_install_installs_the_index_extra_as_well() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "-e '.[dev,index]'" in makefile
