"""The serving processes run on ONNX Runtime alone: each service, started as a real process on loopback over a
real index (the similarity service with the sentence model, a word search embedded), maps no libtorch.

torch, torchvision, transformers and sentence-transformers are the indexing job's (the `index` extra); a
service that imported one would carry hundreds of MB it never uses, and the serving image has none of them.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from indexing.build import BuildPlan, build_index
from lookalike.catalog.text_embedding import TextEmbedder
from tests.support import Services

JOB_ONLY = ("libtorch", "/torch/", "/torchvision/", "/transformers/", "/sentence_transformers/")


@pytest.fixture(scope="module")
def index_with_words(small_catalog: Path, text_model: TextEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("index-with-words")
    build_index(BuildPlan(small_catalog, root, "random", precision="fp32", text_model=text_model))
    return root


def job_only_mappings(pid: int) -> list[str]:
    """The files of the job's libraries a process has mapped (shared objects, or any file under their packages)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return sorted({line.split()[-1] for line in lines if any(mark in line for mark in JOB_ONLY)})


@pytest.mark.parametrize("name", [
    "classifier",
    "similarity",
    "gateway",
])
def test_a_serving_process_maps_no_libtorch(name: str, index_with_words: Path, tmp_path: Path) -> None:
    stack = Services(index_with_words, tmp_path)
    with stack.running([name], env={"similarity": {"TEXT_MODEL": "auto"}},
                       ready=[name] if name != "gateway" else [], alive=["gateway"] if name == "gateway" else []):
        if name == "similarity":  # a word search embeds the words: the model is loaded and has run
            ready = httpx.get(f"{stack.url(name)}/readyz", timeout=30).json()
            assert ready["text_model"] is not None
            found = httpx.get(f"{stack.url(name)}/v1/search/text", params={"q": "chesterfield"}, timeout=60)
            assert found.status_code == 200, found.text
        assert job_only_mappings(stack.processes[name].pid) == []
