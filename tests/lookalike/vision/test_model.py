"""The embedder: one forward pass, 2048-d unit vectors, deterministic `random` weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lookalike.contracts import EMBEDDING_DIM
from lookalike.errors import WeightsUnavailable
from lookalike.vision.embedder import Embedder
from lookalike.vision.preprocess import load_model_input
from lookalike.vision.weights import load_resnet50


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("random", "fp32")


@pytest.fixture(scope="module")
def photos(small_catalog: Path, embedder: Embedder) -> list[np.ndarray]:
    files = sorted(small_catalog.glob("*/*"))[:4]
    return [load_model_input(f.read_bytes(), embedder.preprocessing, max_pixels=60_000_000) for f in files]


def test_embeddings_are_2048_d_unit_vectors(embedder: Embedder, photos: list[np.ndarray]) -> None:
    vectors = embedder.embed_batch(photos)
    assert vectors.shape == (len(photos), EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_an_image_embeds_the_same_alone_or_in_a_batch(embedder: Embedder, photos: list[np.ndarray]) -> None:
    together = embedder.embed_batch(photos)
    alone = embedder.embed_batch(photos[:1])
    np.testing.assert_allclose(alone[0], together[0], atol=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fused_graph_gives_the_eager_networks_embeddings(precision: str, photos: list[np.ndarray]) -> None:
    fused = Embedder("random", precision)
    eager = Embedder("random", precision, fused=False)
    assert fused.fused and not eager.fused
    assert fused.info.model_id == eager.info.model_id  # an index built by one serves the other
    np.testing.assert_allclose(fused.embed_batch(photos), eager.embed_batch(photos), atol=1e-4)


def test_random_weights_are_the_same_in_every_process(embedder: Embedder, photos: list[np.ndarray]) -> None:
    again = Embedder("random", "fp32")
    assert again.info.model_id == embedder.info.model_id
    np.testing.assert_allclose(again.embed_batch(photos), embedder.embed_batch(photos), atol=1e-5)


def test_random_weights_are_named_as_such(embedder: Embedder) -> None:
    assert embedder.info.weights == "random"
    assert "random" in embedder.info.model_id


def test_a_missing_weights_file_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable, match="imagenet, random, auto"):
        load_resnet50(str(tmp_path / "nope.pth"))


def test_imagenet_weights_fail_clearly_when_they_cannot_be_downloaded(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: it must try, and fail, to download
    with pytest.raises(WeightsUnavailable, match="ImageNet weights"):
        load_resnet50("imagenet")


def test_auto_falls_back_to_random_with_a_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert load_resnet50("auto").label == "random"
    assert "RANDOM weights" in caplog.text


def test_a_state_dict_file_is_loaded_and_identified_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "store.pth"
    torch.save(load_resnet50("random").network.state_dict(), path)
    resolved = load_resnet50(str(path))
    assert resolved.label == "file:store.pth"
    assert resolved.identity.startswith("resnet50-file-")
