"""The category head: multinomial logistic regression on the catalogue's embeddings.

The indexing job fits it on the catalogue's own folders (`lookalike.vision.head_training`), so a store
that adds `wardrobe/` gets a sixth category without touching code. Prediction is numpy: a
(C, 2048) matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CategoryHead:
    categories: list[str]
    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)
    mean: np.ndarray  # (D,) standardisation, fitted with the weights
    scale: np.ndarray  # (D,)

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, D) embeddings to (N, C) category probabilities."""
        logits = ((embeddings - self.mean) / self.scale) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, categories=np.array(self.categories), weight=self.weight, bias=self.bias,
                     mean=self.mean, scale=self.scale)

    @classmethod
    def load(cls, path: Path) -> CategoryHead:
        with np.load(path, allow_pickle=False) as data:
            return cls([str(c) for c in data["categories"]], data["weight"], data["bias"], data["mean"], data["scale"])
