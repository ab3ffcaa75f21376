"""Refine a search by the shopper's marks: Rocchio's rule, moving the query toward what they liked.

    q' = normalise(alpha * q + beta * mean(liked) - gamma * mean(unliked))

Stateless: the marks come with each request, so any replica answers it. The defaults (1, 0.75,
0.25) are the textbook ones (Manning, Raghavan & Schuetze, ch. 9): negative feedback weighs
less, because what a shopper rejects says less about what they want than what they pick.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from lookalike.errors import WrongDimension


class RocchioWeights(BaseModel):
    alpha: float = Field(1.0, ge=0, description="Weight of the original query.")
    beta: float = Field(0.75, ge=0, description="Weight of the liked products' mean.")
    gamma: float = Field(0.25, ge=0, description="Weight of the unliked products' mean, subtracted.")


def rocchio(query: np.ndarray, liked: np.ndarray, unliked: np.ndarray,
            weights: RocchioWeights | None = None) -> np.ndarray:
    """The moved, L2-normalised query; `liked` and `unliked` are (n, d) arrays of product vectors (n may be 0)."""
    weights = weights or RocchioWeights()
    moved = weights.alpha * np.asarray(query, dtype=np.float32)
    for examples, sign, weight in ((liked, 1.0, weights.beta), (unliked, -1.0, weights.gamma)):
        if len(examples):
            if examples.shape[1:] != moved.shape:
                raise WrongDimension(f"The embedding has {moved.size} values; this index holds "
                                     f"{examples.shape[1]}-d vectors.")
            moved = moved + sign * weight * examples.mean(axis=0)
    norm = float(np.linalg.norm(moved))
    # All weights 0, or the marks cancelling the query exactly: nothing to move toward, keep the query.
    return (moved / norm).astype(np.float32) if norm > 1e-6 else np.asarray(query, dtype=np.float32)
