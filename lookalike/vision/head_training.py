"""Fitting the category head: L-BFGS in torch, and an honest held-out accuracy for the manifest.

Only the indexing job trains; the classifier service just loads the fitted `CategoryHead`.
"""

from __future__ import annotations

import numpy as np
import torch

from lookalike.vision.head import CategoryHead


def fit_head(embeddings: np.ndarray, labels: np.ndarray, categories: list[str],
             l2: float = 1e-2, max_iter: int = 100) -> CategoryHead:
    """Full-batch L-BFGS on standardised embeddings; `labels` index into `categories`.

    It runs on one thread: a (C, 2048) problem gains nothing from more, and on a busy
    machine OpenMP threads spinning for each other made it ten times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(np.asarray(embeddings, dtype=np.float32), labels, categories, l2, max_iter)
    finally:
        torch.set_num_threads(threads)


def _fit(x: np.ndarray, labels: np.ndarray, categories: list[str], l2: float, max_iter: int) -> CategoryHead:
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    n_classes = len(categories)
    if n_classes == 1:
        return CategoryHead(categories, np.zeros((1, x.shape[1]), np.float32), np.zeros(1, np.float32), mean, scale)
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
    return CategoryHead(categories, linear.weight.detach().numpy().copy(), linear.bias.detach().numpy().copy(),
                        mean, scale)


def cross_validated_accuracy(embeddings: np.ndarray, labels: np.ndarray, categories: list[str],
                             folds: int = 5, seed: int = 0) -> tuple[float | None, int]:
    """Stratified k-fold held-out accuracy of `fit_head`; (None, 0) when too few images."""
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
        head = fit_head(embeddings[train], labels[train], categories)
        correct += int((head.predict_proba(embeddings[test]).argmax(axis=1) == labels[test]).sum())
    return correct / len(labels), folds
