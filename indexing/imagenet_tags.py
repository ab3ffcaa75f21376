"""A photo's ImageNet tags: the classes ResNet50's own `fc` layer sees, from the embedding's forward pass.

They let a shopper find a photo by a word its products.csv row lacks ("rocking chair", "studio
couch"). They mean something only with the ImageNet weights: with `random` weights the job writes
none and says so, since random logits would tag every photo with noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOP_TAGS = 5
MIN_PROBABILITY = 0.05

Tags = list[tuple[str, float]]


def top_tags(probabilities: np.ndarray, classes: Sequence[str], top: int = TOP_TAGS,
             min_probability: float = MIN_PROBABILITY) -> list[Tags]:
    """Each row's `top` most likely classes at or above `min_probability`, most likely first."""
    tags = []
    for row in np.asarray(probabilities, dtype=np.float64):
        best = np.argsort(-row, kind="stable")[:top]
        tags.append([(classes[i], round(float(row[i]), 4)) for i in best if row[i] >= min_probability])
    return tags


def writes_tags(weights: str) -> bool:
    """Only the ImageNet weights' `fc` layer knows the ImageNet classes."""
    return weights == "imagenet"
