"""The category head: multinomial logistic regression on the catalogue's embeddings.

The indexing job fits it on the catalogue's own folders, so a store that adds `wardrobe/`
gets a sixth category without touching code. Prediction is numpy: a (C, 2048) matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


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

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels: np.ndarray, categories: list[str],
            l2: float = 1e-2, max_iter: int = 100) -> CategoryHead:
        """Full-batch L-BFGS on standardised embeddings; `labels` index into `categories`.

        It runs on one thread: a (C, 2048) problem gains nothing from more, and on a busy
        machine OpenMP threads spinning for each other made it ten times slower.
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return cls._fit(np.asarray(embeddings, dtype=np.float32), labels, categories, l2, max_iter)
        finally:
            torch.set_num_threads(threads)

    @classmethod
    def _fit(cls, x: np.ndarray, labels: np.ndarray, categories: list[str], l2: float, max_iter: int) -> CategoryHead:
        mean = x.mean(axis=0)
        scale = x.std(axis=0) + 1e-6
        n_classes = len(categories)
        if n_classes == 1:
            return cls(categories, np.zeros((1, x.shape[1]), np.float32), np.zeros(1, np.float32), mean, scale)
        xt = torch.from_numpy((x - mean) / scale)
        yt = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        linear = torch.nn.Linear(x.shape[1], n_classes)
        torch.nn.init.zeros_(linear.weight)
        torch.nn.init.zeros_(linear.bias)
        optimiser = torch.optim.LBFGS(linear.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(linear(xt), yt) + l2 * linear.weight.square().sum() / 2
            loss.backward()
            return loss

        optimiser.step(closure)
        return cls(categories, linear.weight.detach().numpy().copy(), linear.bias.detach().numpy().copy(), mean, scale)


def cross_validated_accuracy(embeddings: np.ndarray, labels: np.ndarray, categories: list[str],
                             folds: int = 5, seed: int = 0) -> tuple[float | None, int]:
    """Stratified k-fold held-out accuracy of `CategoryHead.fit`; (None, 0) when too few images."""
    labels = np.asarray(labels)
    smallest = min(int((labels == c).sum()) for c in range(len(categories)))
    folds = min(folds, smallest)
    if len(categories) < 2 or folds < 2:
        return None, 0
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    for c in range(len(categories)):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold_of[members] = np.arange(len(members)) % folds
    correct = 0
    for f in range(folds):
        train, test = fold_of != f, fold_of == f
        head = CategoryHead.fit(embeddings[train], labels[train], categories)
        correct += int((head.predict_proba(embeddings[test]).argmax(axis=1) == labels[test]).sum())
    return correct / len(labels), folds
