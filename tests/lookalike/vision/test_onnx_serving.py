"""The classifier serves the index version's own ONNX graph: the torch model's numbers, without torch.

With `random` weights (the only ones here) every embedding lies within cos 0.998 of every other, so
a cosine of 0.9999 is checked on the raw pool5 too, where random weights leave room to differ, and
the decided category is compared photo by photo.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog.layout import FP32_MODEL, HEAD, MANIFEST, IndexLayout, read_manifest
from lookalike.contracts import Precision
from lookalike.errors import IndexMismatch, NetworkModelInvalid, NotReady
from lookalike.vision.classifier import Classifier
from lookalike.vision.embedder import Embedder
from lookalike.vision.head import CategoryHead
from lookalike.vision.onnx_engine import (
    CATEGORY_LOGITS,
    EMBEDDING,
    INPUT,
    LEAN,
    LOGITS,
    POOL5,
    OnnxEmbedder,
    RuntimeMemory,
    file_sha256,
    normalised,
    served_memory,
)
from lookalike.vision.preprocess import load_model_input
from supervisor.stack import why_build
from tests.support import REPO


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def torch_model() -> Embedder:
    return Embedder("random", "fp32", fused=False)


@pytest.fixture(scope="module")
def photos(small_catalog: Path, query_photos: list[tuple[Path, str]], torch_model: Embedder) -> list[np.ndarray]:
    """Every photo of the test catalogue, and 20 shoppers' query photos it was not built from."""
    files = sorted(small_catalog.glob("*/*.jpg")) + [path for path, _ in query_photos[:20]]
    return [load_model_input(f.read_bytes(), torch_model.preprocessing, max_pixels=60_000_000) for f in files]


@pytest.fixture(scope="module")
def served(built_index: Path) -> OnnxEmbedder:
    version = IndexLayout(built_index).require_current()
    manifest = read_manifest(version)
    assert manifest.network is not None
    return OnnxEmbedder(version / manifest.network.file, manifest.model, manifest.preprocessing,
                        sha256=manifest.network.sha256)


def test_the_index_version_holds_its_fp32_network_with_its_digest(built_index: Path) -> None:
    version = IndexLayout(built_index).require_current()
    manifest = read_manifest(version)
    assert manifest.network is not None and manifest.network.file == FP32_MODEL
    assert manifest.network.sha256 == file_sha256(version / FP32_MODEL)
    assert manifest.network.exporter.startswith("torch ")
    assert not list(version.glob(".network*")), "the network-only export is not published"


def test_onnx_embeddings_and_logits_match_the_torch_models(served: OnnxEmbedder, torch_model: Embedder,
                                                          built_index: Path, photos: list[np.ndarray]) -> None:
    head = CategoryHead.load(IndexLayout(built_index).require_current() / HEAD)
    onnx_pool5, onnx_logits, onnx_embedding, onnx_categories = [], [], [], []
    torch_embedding, torch_probabilities = [], []
    for at in range(0, len(photos), 8):
        batch = photos[at:at + 8]
        outputs = served.session.run([POOL5, LOGITS, EMBEDDING, CATEGORY_LOGITS],
                                     {INPUT: normalised(np.stack(batch), served.preprocessing)})
        for found, out in zip((onnx_pool5, onnx_logits, onnx_embedding, onnx_categories), outputs):
            found.append(out)
        vectors, imagenet = torch_model.embed_with_imagenet(batch)
        torch_embedding.append(vectors)
        torch_probabilities.append(imagenet)
    pool5, embedding = np.concatenate(onnx_pool5), np.concatenate(onnx_embedding)
    reference = np.concatenate(torch_embedding)
    assert cosines(pool5, reference).min() >= 0.9999
    assert cosines(embedding, reference).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)

    # The 1000 ImageNet logits, through softmax on both sides, and the category head's logits.
    logits = np.concatenate(onnx_logits)
    imagenet = np.exp(logits - logits.max(axis=1, keepdims=True))
    imagenet /= imagenet.sum(axis=1, keepdims=True)
    assert cosines(imagenet, np.concatenate(torch_probabilities)).min() >= 0.9999
    category_logits = np.concatenate(onnx_categories)
    torch_head = ((reference - head.mean) / head.scale) @ head.weight.T + head.bias
    assert cosines(category_logits, torch_head).min() >= 0.9999
    assert (category_logits.argmax(axis=1) == head.predict_proba(reference).argmax(axis=1)).all()


def test_the_classifier_decides_as_the_torch_model_and_head_do(built_index: Path, torch_model: Embedder,
                                                                photos: list[np.ndarray]) -> None:
    classifier = Classifier(built_index, weights="random", precision="auto", use_cuda=False)
    classifier.reload()
    loaded = classifier.loaded
    assert loaded is not None and loaded.embedder.precision == "fp32" and loaded.embedder.has_head
    results = classifier.classify_batch(photos[:8])
    reference = torch_model.embed_batch(photos[:8])
    decided = [loaded.head.categories[i] for i in loaded.head.predict_proba(reference).argmax(axis=1)]
    assert [r.category for r in results] == decided
    assert cosines(np.stack([r.embedding for r in results]), reference).min() >= 0.9999


def pre_onnx_copy(built_index: Path, root: Path) -> Path:
    """The index as a version built before this change: no `network` in its manifest, no model-fp32.onnx."""
    shutil.copytree(built_index, root, symlinks=True)
    version = IndexLayout(root).require_current()
    manifest = json.loads((version / MANIFEST).read_text())
    del manifest["network"]
    (version / MANIFEST).write_text(json.dumps(manifest))
    (version / FP32_MODEL).unlink()
    return root


def test_an_index_built_before_onnx_serving_is_refused_with_a_reason(built_index: Path, tmp_path: Path) -> None:
    old = pre_onnx_copy(built_index, tmp_path / "old")
    classifier = Classifier(old, weights="random", use_cuda=False)
    with pytest.raises(NetworkModelInvalid, match="built before the classifier served through ONNX Runtime") as e:
        classifier.reload()
    assert e.value.status == 409 and e.value.code == "network_model_invalid" and "Re-index" in e.value.message
    classifier.served.load_at_start()
    assert classifier.loaded is None and "Re-index" in (classifier.not_ready_reason or "")
    with pytest.raises(NotReady):
        classifier.classify_batch([np.zeros((224, 224, 3), np.uint8)])


def test_make_run_rebuilds_an_index_built_before_onnx_serving(built_index: Path, tmp_path: Path) -> None:
    old = pre_onnx_copy(built_index, tmp_path / "old")
    assert why_build(old, "faiss") == (f"the index at {old} was built before the classifier served through ONNX "
                                       "Runtime (it holds no fp32 network)")


def test_a_network_altered_after_indexing_is_refused(built_index: Path, tmp_path: Path) -> None:
    copy = tmp_path / "altered"
    shutil.copytree(built_index, copy, symlinks=True)
    model = IndexLayout(copy).require_current() / FP32_MODEL
    with model.open("r+b") as fh:
        fh.seek(-16, 2)
        fh.write(b"\0" * 16)
    with pytest.raises(NetworkModelInvalid, match="changed after indexing"):
        Classifier(copy, weights="random", use_cuda=False).reload()


def test_other_weights_than_the_indexs_are_refused(built_index: Path) -> None:
    with pytest.raises(IndexMismatch, match="WEIGHTS=imagenet"):
        Classifier(built_index, weights="imagenet", use_cuda=False).reload()


def test_the_classifier_service_imports_no_torch() -> None:
    """Its whole import path, app and command: libtorch is never loaded, not even lazily at start."""
    names = ("torch", "torchvision", "transformers", "sentence_transformers")
    found = subprocess.run(
        [sys.executable, "-c", "import sys, classifier_service.__main__, classifier_service.app; "
         f"print(sorted(m for m in sys.modules if m.split('.')[0] in {names!r}))"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"


def test_the_export_carries_every_weight_batch_norm_statistics_included(small_catalog: Path, tmp_path: Path) -> None:
    """`random` weights leave every batch norm at its identity (weight 1, bias 0, mean 0, variance 1), where a
    weight lost on export would not show: these weights have each statistic drawn at random."""
    import torch

    from lookalike.vision.onnx_export import export_network
    from lookalike.vision.weights import load_resnet50

    network = load_resnet50("random").network
    generator = torch.Generator().manual_seed(1)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor, low, high in ((module.weight.data, 0.5, 1.5), (module.bias.data, -0.1, 0.1),
                                      (module.running_mean, -0.1, 0.1), (module.running_var, 0.5, 2.0)):
                tensor.uniform_(low, high, generator=generator)
    weights = tmp_path / "drawn.pth"
    torch.save(network.state_dict(), weights)
    model = Embedder(str(weights), "fp32", fused=False)
    export_network(model, tmp_path / "network.onnx")
    exported = OnnxEmbedder(tmp_path / "network.onnx", model.info, model.preprocessing)
    files = sorted(small_catalog.glob("*/*.jpg"))[::6]
    photos = [load_model_input(f.read_bytes(), model.preprocessing, max_pixels=60_000_000) for f in files]
    assert cosines(exported.embed_batch(photos), model.embed_batch(photos)).min() >= 0.9999
    assert [i.name for i in exported.session.get_inputs()] == [INPUT]  # the weights are constants, not inputs


@pytest.mark.parametrize(("precision", "arena", "expected"), [
    ("int8", None, RuntimeMemory(cpu_arena=True, mem_pattern=False)),
    ("fp32", None, LEAN),
    ("int8", False, LEAN),
    ("fp32", True, RuntimeMemory(cpu_arena=True, mem_pattern=True)),
])
def test_unset_the_arena_serves_int8_alone_and_the_setting_decides_for_both(
        precision: Precision, arena: bool | None, expected: RuntimeMemory) -> None:
    """int8 ran 8 % slower without the arena; fp32 gains nothing from it and holds 50 MB more (performance.md)."""
    assert served_memory(precision, arena) == expected
