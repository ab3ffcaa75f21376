"""Fitting the category head: multinomial logistic regression (scikit-learn's L-BFGS), and an honest held-out
accuracy for the manifest.

Only the indexing job (and the evaluation) train; the classifier serves the fitted `CategoryHead`
appended to its graph. scikit-learn, not torch: the job embeds through ONNX Runtime and imports
torch only in the short-lived process that exports the network (`indexing.torch_steps`).
"""

from __future__ import annotations

import warnings

import numpy as np

from lookalike.vision.head import CategoryHead

ABSENT_BIAS = 30.0
"""How far below the lowest fitted bias a category with no training image is put: never predicted."""


def fit_head(embeddings: np.ndarray, labels: np.ndarray, categories: list[str],
             l2: float = 1e-2, max_iter: int = 100) -> CategoryHead:
    """L-BFGS on standardised embeddings, minimising the mean cross-entropy plus `l2`/2 ||W||²;
    `labels` index into `categories`.

    It runs on one thread: a (C, 2048) problem gains nothing from more, and on a busy machine
    threads spinning for each other made it ten times slower.
    """
    # Imported here: scikit-learn and scipy hold 150 MB, which the job needs only from the head on, not
    # while its torch steps run beside it.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    n_classes, dim = len(categories), x.shape[1]
    present = np.unique(labels)
    if len(present) < 2:
        weight, bias = np.zeros((n_classes, dim), np.float32), np.full(n_classes, -ABSENT_BIAS, np.float32)
        bias[present] = 0.0
        return CategoryHead(categories, weight, bias, mean, scale)
    # scikit-learn sums the loss and penalises ||W||²/2 once: C = 1 / (l2 · n) is the mean loss plus l2/2 ||W||².
    model = LogisticRegression(C=1.0 / (l2 * len(x)), max_iter=max_iter, solver="lbfgs")
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter bounds the time; the optimum is near
        model.fit((x - mean) / scale, labels)
    coef, intercept = model.coef_, model.intercept_
    if len(present) == 2:  # one logistic output: the same probabilities as a softmax over ∓half of it
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    weight = np.zeros((n_classes, dim), np.float32)
    bias = np.full(n_classes, float(intercept.min()) - ABSENT_BIAS, np.float32)
    weight[present], bias[present] = coef, intercept
    return CategoryHead(categories, weight, bias, mean, scale)


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
