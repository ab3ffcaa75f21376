"""The category head as the classifier uses it: probabilities from embeddings, saved and loaded with the index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.vision.head import CategoryHead
from lookalike.vision.head_training import fit_head
from tests.support import clusters


def test_a_saved_head_predicts_the_same_after_loading(tmp_path: Path) -> None:
    x, y = clusters()
    head = fit_head(x, y, ["bed", "chair", "lamp"])
    head.save(tmp_path / "head.npz")
    loaded = CategoryHead.load(tmp_path / "head.npz")
    assert loaded.categories == ["bed", "chair", "lamp"]
    np.testing.assert_allclose(loaded.predict_proba(x), head.predict_proba(x), rtol=1e-6)
