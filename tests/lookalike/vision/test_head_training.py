"""Training the category head: fitted on catalogue embeddings, honest about its held-out accuracy."""

from __future__ import annotations

import numpy as np

from lookalike.vision.head_training import cross_validated_accuracy, fit_head
from tests.support import clusters


def test_it_learns_separable_categories() -> None:
    x, y = clusters()
    head = fit_head(x, y, ["bed", "chair", "lamp"])
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
    head = fit_head(x, np.zeros(len(x), dtype=int), ["wardrobe"])
    np.testing.assert_allclose(head.predict_proba(x), 1.0)
