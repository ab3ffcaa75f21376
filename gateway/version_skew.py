"""One index version per search, while the two services reload one after the other.

A photo search names the index version its classification came from; the similarity service
answers 409 `version_skew` when it holds another (the indexing job reloads the classifier and the
similarity service one after the other, so for a moment they differ). The gateway then waits until
both services' readiness names one version, classifies again on it and searches once more: a
shopper sees neither a 422 for a category the other version lacks nor hits of two versions merged.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from gateway.upstream import Upstream
from lookalike.contracts import ClassifierReadiness, ModelInfo, SimilarityReadiness
from lookalike.errors import ApiError, ServiceUnavailable, VersionSkew

CHECK_EVERY_S = 0.1


@dataclass(frozen=True)
class Agreed:
    """The index version both services serve, and the model the classifier embeds with."""

    index_version: str
    model: ModelInfo | None


def is_version_skew(exc: ApiError) -> bool:
    return exc.code == VersionSkew.code


def catalogue_changing() -> ServiceUnavailable:
    return ServiceUnavailable("The catalogue is being updated right now. Please try again in a moment.",
                              headers={"Retry-After": "1"})


async def agreed_version(classifier: Upstream, similarity: Upstream, within_s: float) -> Agreed:
    """Wait (up to `within_s`) until the classifier and the similarity service are ready on one index version."""
    deadline = time.monotonic() + within_s
    while True:
        classifying, searching = await asyncio.gather(classifier.readiness(ClassifierReadiness),
                                                      similarity.readiness(SimilarityReadiness))
        if (classifying is not None and searching is not None and classifying.ready and searching.ready
                and classifying.index_version is not None
                and classifying.index_version == searching.index_version):
            return Agreed(classifying.index_version, classifying.model)
        if time.monotonic() >= deadline:
            raise catalogue_changing()
        await asyncio.sleep(CHECK_EVERY_S)
