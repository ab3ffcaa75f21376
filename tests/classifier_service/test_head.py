"""The category head: fitted on catalogue embeddings, saved with the index, honest about accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier_service.head import CategoryHead, cross_validated_accuracy


def clusters(n_per: int = 30, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 3
    x = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(3), n_per)


def test_it_learns_separable_categories() -> None:
    x, y = clusters()
    head = CategoryHead.fit(x, y, ["bed", "chair", "lamp"])
    proba = head.predict_proba(x)
    assert proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (proba.argmax(axis=1) == y).mean() == 1.0


def test_cross_validation_reports_held_out_accuracy() -> None:
    x, y = clusters()
    accuracy, folds = cross_validated_accuracy(x, y, ["bed", "chair", "lamp"])
    assert folds == 5 and accuracy is not None and accuracy > 0.95


def test_cross_validation_declines_when_there_are_too_few_images() -> None:
    x, y = clusters(n_per=1)
    assert cross_validated_accuracy(x, y, ["bed", "chair", "lamp"]) == (None, 0)


def test_a_single_category_is_always_certain() -> None:
    x, _ = clusters(n_per=5)
    head = CategoryHead.fit(x, np.zeros(len(x), dtype=int), ["wardrobe"])
    np.testing.assert_allclose(head.predict_proba(x), 1.0)


def test_a_saved_head_predicts_the_same_after_loading(tmp_path: Path) -> None:
    x, y = clusters()
    head = CategoryHead.fit(x, y, ["bed", "chair", "lamp"])
    head.save(tmp_path / "head.npz")
    loaded = CategoryHead.load(tmp_path / "head.npz")
    assert loaded.categories == ["bed", "chair", "lamp"]
    np.testing.assert_allclose(loaded.predict_proba(x), head.predict_proba(x), rtol=1e-6)
