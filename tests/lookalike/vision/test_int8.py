"""The int8 model: the exported fp32 network quantised on catalogue photos, loaded by the classifier.

All with `random` weights: every random embedding lies within cos 0.998 of every other, so the
closeness checked here is a floor for "nothing is broken", not a measure of int8's quality.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog.layout import INT8_MODEL, read_manifest
from lookalike.contracts import EMBEDDING_DIM, GateFigures
from lookalike.errors import QuantisedModelInvalid
from lookalike.vision.classifier import Classifier
from lookalike.vision.embedder import Embedder
from lookalike.vision.int8_engine import Int8Embedder
from lookalike.vision.int8_export import quantise
from lookalike.vision.onnx_engine import OnnxEmbedder
from lookalike.vision.onnx_export import export_network
from lookalike.vision.precision import choose_precision, cpu_int8_kernels
from lookalike.vision.preprocess import load_model_input


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    return Embedder("random", "fp32", fused=False)


@pytest.fixture(scope="module")
def network(fp32: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 network exported to ONNX, as the indexing job does before it quantises."""
    path = tmp_path_factory.mktemp("network") / "network.onnx"
    export_network(fp32, path)
    return path


@pytest.fixture(scope="module")
def photos(small_catalog: Path, fp32: Embedder) -> list[np.ndarray]:
    files = sorted(small_catalog.glob("*/*.jpg"))
    return [load_model_input(f.read_bytes(), fp32.preprocessing, max_pixels=60_000_000) for f in files]


@pytest.fixture(scope="module")
def quantised(network: Path, fp32: Embedder, photos: list[np.ndarray],
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("int8") / INT8_MODEL
    sha256 = quantise(network, fp32.preprocessing, photos[::3], path)
    return path, sha256


@pytest.fixture(scope="module")
def int8(quantised: tuple[Path, str], fp32: Embedder) -> Int8Embedder:
    path, sha256 = quantised
    return Int8Embedder(path, fp32.info, fp32.preprocessing, sha256=sha256)


def test_the_quantised_model_embeds_like_the_fp32_one(int8: Int8Embedder, fp32: Embedder,
                                                      photos: list[np.ndarray]) -> None:
    vectors = int8.embed_batch(photos[:8])
    assert vectors.shape == (8, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * fp32.embed_batch(photos[:8])).sum(axis=1)
    assert cosines.min() > 0.99, cosines
    assert int8.info.precision == "int8" and int8.info.model_id == fp32.info.model_id


def test_it_also_gives_the_1000_imagenet_logits(int8: Int8Embedder, photos: list[np.ndarray]) -> None:
    embeddings, logits = int8.embed_with_logits(photos[:2])
    assert embeddings.shape == (2, EMBEDDING_DIM) and logits.shape == (2, 1000)


def test_an_image_embeds_the_same_alone_or_in_a_batch(int8: Int8Embedder, photos: list[np.ndarray]) -> None:
    np.testing.assert_allclose(int8.embed_batch(photos[:1])[0], int8.embed_batch(photos[:4])[0], atol=1e-5)


def test_the_same_photos_quantise_to_the_same_file(quantised: tuple[Path, str], network: Path, fp32: Embedder,
                                                   photos: list[np.ndarray], tmp_path: Path) -> None:
    """So a re-index of an unchanged catalogue reuses the int8 embeddings it cached."""
    assert quantise(network, fp32.preprocessing, photos[::3], tmp_path / "again.onnx") == quantised[1]


def test_without_its_int8_kernels_the_model_gives_the_same_embeddings(quantised: tuple[Path, str], fp32: Embedder,
                                                                     int8: Int8Embedder,
                                                                     photos: list[np.ndarray]) -> None:
    """A CPU without VNNI still runs int8 correctly.

    ONNX Runtime chooses its int8 kernels from the CPU's flags and has no switch to force plainer
    ones; `plain_kernels` turns its fusions off instead, so every quantised convolution runs as
    DequantizeLinear, fp32 Conv, QuantizeLinear: no int8 arithmetic at all. On a machine without
    VNNI (this one reports `cpu_int8_kernels()`), the fused path is itself the non-VNNI one.
    """
    path, sha256 = quantised
    plain = Int8Embedder(path, fp32.info, fp32.preprocessing, sha256=sha256, plain_kernels=True)
    cosines = (plain.embed_batch(photos[:4]) * int8.embed_batch(photos[:4])).sum(axis=1)
    assert cosines.min() > 0.999, (cpu_int8_kernels(), cosines)


def test_a_model_altered_after_indexing_is_refused(quantised: tuple[Path, str], fp32: Embedder,
                                                  tmp_path: Path) -> None:
    path, sha256 = quantised
    altered = tmp_path / INT8_MODEL
    shutil.copy(path, altered)
    with altered.open("r+b") as fh:
        fh.seek(-16, 2)
        fh.write(b"\0" * 16)
    with pytest.raises(QuantisedModelInvalid, match="changed after indexing"):
        Int8Embedder(altered, fp32.info, fp32.preprocessing, sha256=sha256)


def gate(passed: bool) -> GateFigures:
    return GateFigures(images=10, mean_cosine=0.99 if passed else 0.5, min_cosine=0.9, top10_overlap=1.0,
                       head_agreement=1.0, thresholds={"mean_cosine": 0.98}, passed=passed,
                       failures=[] if passed else ["mean cosine 0.5000 < 0.98"])


@pytest.mark.parametrize(("requested", "weights", "device", "gate_passed", "served", "loud"), [
    ("auto", "imagenet", "cpu", True, "int8", False),
    ("auto", "imagenet", "cpu", False, "fp32", False),   # the gate failed: fall back
    ("auto", "imagenet", "cpu", None, "fp32", False),    # no int8 model in the version
    ("auto", "random", "cpu", True, "fp32", False),      # random weights: the gate can't judge near-ties
    ("int8", "random", "cpu", True, "int8", False),
    ("int8", "imagenet", "cpu", False, "int8", True),    # forced although the gate failed: loudly
    ("int8", "imagenet", "cpu", None, "fp32", True),
    ("int8", "imagenet", "cuda", True, "fp32", True),    # ONNX Runtime's CUDA provider runs fp32
    ("fp32", "imagenet", "cpu", True, "fp32", False),
    ("bf16", "imagenet", "cpu", True, "fp32", True),     # bf16 was the torch graph's: fp32 now, said so
])
def test_the_precision_rule(requested: str, weights: str, device: str, gate_passed: bool | None, served: str,
                            loud: bool) -> None:
    figures = None if gate_passed is None else gate(gate_passed)
    precision, reason, warnings = choose_precision(requested, weights, device, figures)
    assert precision == served and reason
    assert bool(warnings) == loud
    if gate_passed is False:
        assert "mean cosine 0.5000 < 0.98" in (reason + " ".join(warnings))


def test_the_classifier_serves_the_int8_model_of_the_serving_version(int8_index: Path,
                                                                     random_weights_file: Path) -> None:
    manifest = read_manifest(int8_index / "current")
    assert manifest.int8 is not None and manifest.model.precision == "int8"
    classifier = Classifier(int8_index, weights=str(random_weights_file), precision="auto", use_cuda=False)
    classifier.reload()
    loaded = classifier.loaded
    assert loaded is not None and isinstance(loaded.embedder, OnnxEmbedder)
    assert loaded.embedder.precision == "int8" and loaded.embedder.path.name == manifest.int8.file
    assert loaded.embedder.sha256 == manifest.int8.sha256 and loaded.embedder.has_head
    assert "gate passed" in loaded.precision_reason

    forced_fp32 = Classifier(int8_index, weights=str(random_weights_file), precision="fp32", use_cuda=False)
    forced_fp32.reload()
    assert forced_fp32.loaded is not None and forced_fp32.loaded.embedder.precision == "fp32"
    assert manifest.network is not None and forced_fp32.loaded.embedder.sha256 == manifest.network.sha256
    assert any("agree only within" in w for w in forced_fp32.loaded.warnings)
