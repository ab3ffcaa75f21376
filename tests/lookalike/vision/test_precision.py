"""bf16 against fp32 on real photos, in the torch model the evaluation and the benchmark run: the same
embeddings, near enough that either measures the other's index. The services serve fp32 or int8
through ONNX Runtime; PRECISION=bf16 there runs fp32 and says so.

Same top-1 is checked the way the product searches, within the query's category (see that test for
the whole-catalogue figure); with real weights `make bench` reports it (`details.bf16_vs_fp32`).

The whole catalogue and all 200 query photos are decoded once and embedded once per precision,
in this process, with the deterministic `random` weights (the only ones available here). About
1,200 images per precision: about a minute on a quiet 2-core machine with AVX-512 BF16 (estimated from
the issue's rates; 11 minutes on the loaded shared machine it was written on).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from classifier_service.settings import ClassifierSettings
from indexing.catalog import scan_catalog
from lookalike.catalog.manifest import Preprocessing
from lookalike.contracts import PRECISION_SETTINGS
from lookalike.settings import ModelSettings
from lookalike.vision.classifier import Classifier
from lookalike.vision.embedder import Embedder, resolve_precision
from lookalike.vision.network import resolve_device
from lookalike.vision.precision import cpu_has_fast_bf16
from lookalike.vision.preprocess import load_model_input

BATCH = 32

# Where the CPU lacks AVX-512 BF16 and AMX, PyTorch emulates bf16 about ten times slower than fp32, and
# PRECISION=auto serves fp32 there: comparing 1,200 photos at both would take most of an hour for a
# precision the product does not use on that machine.
SLOW_BF16 = ("this CPU has no fast bf16 (no AVX-512 BF16 or AMX): the product serves fp32 here, so bf16 vs fp32 "
             "on the whole catalogue is checked only on CPUs that would serve bf16")


@dataclass(frozen=True)
class Vectors:
    """The catalogue's and the queries' embeddings at one precision."""

    catalog: np.ndarray
    queries: np.ndarray


def decode_all(files: Sequence[Path]) -> list[np.ndarray]:
    prep = Preprocessing()
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda f: load_model_input(f.read_bytes(), prep, max_pixels=60_000_000), files))


def embed_all(embedder: Embedder, images: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([embedder.embed_batch(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])


def top1(queries: np.ndarray, catalog: np.ndarray) -> np.ndarray:
    """Exact nearest catalogue item per query: what the Flat index returns."""
    return (queries @ catalog.T).argmax(axis=1)


@pytest.fixture(scope="module")
def embedded(shared: Path, query_photos: list[tuple[Path, str]]) -> dict[str, Vectors]:
    if resolve_device().type == "cpu" and not cpu_has_fast_bf16():
        pytest.skip(SLOW_BF16)
    scan = scan_catalog(shared / "catalog")
    catalog_inputs = decode_all([scan.root / e.file for e in scan.entries])
    query_inputs = decode_all([path for path, _ in query_photos])
    result = {}
    for precision in ("fp32", "bf16"):
        embedder = Embedder("random", precision)
        result[precision] = Vectors(embed_all(embedder, catalog_inputs), embed_all(embedder, query_inputs))
        del embedder
        gc.collect()
    return result


@pytest.fixture(scope="module")
def catalog_categories(shared: Path) -> np.ndarray:
    return np.array([e.category for e in scan_catalog(shared / "catalog").entries])


@pytest.fixture(scope="module")
def query_categories(query_photos: list[tuple[Path, str]]) -> np.ndarray:
    return np.array([category for _, category in query_photos])


def test_bf16_embeddings_have_cosine_at_least_0_99_with_fp32_for_every_photo(embedded: dict[str, Vectors]) -> None:
    fp32, bf16 = embedded["fp32"], embedded["bf16"]
    cosines = np.concatenate([(fp32.catalog * bf16.catalog).sum(axis=1), (fp32.queries * bf16.queries).sum(axis=1)])
    assert cosines.size >= 1000
    assert cosines.min() >= 0.99, f"worst cosine {cosines.min():.4f}"


@pytest.mark.parametrize(("index_precision", "query_precision"), [("fp32", "bf16"), ("bf16", "fp32")])
def test_every_photo_embedded_at_one_precision_finds_itself_first_in_an_index_built_at_the_other(
        embedded: dict[str, Vectors], index_precision: str, query_precision: str) -> None:
    """The sharp form of the cosine check above, which `random` weights make easy to pass: they put
    every photo within cosine 0.99 of every other. Here bf16's error must stay smaller than the
    difference between any two of the 1,188 photos, near-duplicates included."""
    index = np.concatenate([embedded[index_precision].catalog, embedded[index_precision].queries])
    queries = np.concatenate([embedded[query_precision].catalog, embedded[query_precision].queries])
    found = top1(queries, index)
    assert (found == np.arange(len(index))).all(), f"{(found != np.arange(len(index))).sum()} photos found another"


def test_bf16_finds_the_same_top_result_as_fp32_for_at_least_95_percent_of_queries(
        embedded: dict[str, Vectors], catalog_categories: np.ndarray, query_categories: np.ndarray) -> None:
    """Top-1 as the product finds it: in the index of the query's category, never the whole catalogue.

    Across the whole catalogue at once, `random` weights give 93% (measured): they put every photo
    within cosine 0.99-0.99999 of every other, and 7% of queries win by less than 1e-5, a tie that
    bf16 rounding can break either way. `make bench` reports the figure for the weights it loads.
    """
    fp32, bf16 = embedded["fp32"], embedded["bf16"]

    def top1_in_category(queries: np.ndarray, catalog: np.ndarray) -> np.ndarray:
        scores = queries @ catalog.T
        scores[query_categories[:, None] != catalog_categories[None, :]] = -np.inf
        return scores.argmax(axis=1)

    reference = top1_in_category(fp32.queries, fp32.catalog)
    agreement = {
        "bf16 queries, bf16 index": (reference == top1_in_category(bf16.queries, bf16.catalog)).mean(),
        "bf16 queries, fp32 index": (reference == top1_in_category(bf16.queries, fp32.catalog)).mean(),
        "fp32 queries, bf16 index": (top1_in_category(bf16.queries, bf16.catalog)
                                     == top1_in_category(fp32.queries, bf16.catalog)).mean(),
    }
    assert len(fp32.queries) == 200
    assert min(agreement.values()) >= 0.95, {k: f"{v:.1%}" for k, v in agreement.items()}


def test_a_classifier_asked_for_bf16_serves_fp32_and_says_so(built_index: Path) -> None:
    """bf16 was the fused torch graph's precision; ONNX Runtime serves the version's fp32 graph instead."""
    classifier = Classifier(built_index, weights="random", precision="bf16", use_cuda=False)
    classifier.reload()
    loaded = classifier.loaded
    assert loaded is not None and loaded.manifest.model.precision == "fp32"
    assert loaded.embedder.info.precision == "fp32"
    assert loaded.embedder.info.model_id == loaded.manifest.model.model_id
    assert any("bf16" in w for w in loaded.warnings) and "fp32" in loaded.precision_reason


def test_auto_precision_is_bf16_exactly_where_the_cpu_runs_it_fast() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="auto, fp32, bf16, int8"):
        resolve_precision("fp16", cpu)


def test_precision_settings_take_the_same_strings_and_refuse_others_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for asked in PRECISION_SETTINGS:
        monkeypatch.setenv("PRECISION", asked)
        assert ModelSettings().precision == asked == ClassifierSettings().precision
    monkeypatch.setenv("PRECISION", "fp16")
    with pytest.raises(ValidationError, match="'auto', 'fp32', 'bf16' or 'int8'"):
        ModelSettings()


@pytest.mark.parametrize("supported", [True, False])
def test_auto_precision_on_a_gpu_is_bf16_where_the_gpu_supports_it(monkeypatch: pytest.MonkeyPatch,
                                                                   supported: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: supported)
    assert resolve_precision("auto", torch.device("cuda")) == ("bf16" if supported else "fp32")


def test_cuda_is_used_when_present_and_never_required() -> None:
    assert resolve_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
