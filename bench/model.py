"""The bare model, measured in this process: throughput per batch size, and bf16 against fp32.

This is the yardstick for the pipeline: end-to-end throughput divided by the best bare
throughput says how much the decode, the HTTP hops and the search cost on top.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from lookalike.vision.embedder import Embedder
from lookalike.vision.onnx_engine import OnnxEmbedder
from lookalike.vision.precision import TORCH_PRECISIONS

CHUNK = 32


@dataclass(frozen=True)
class ModelFigures:
    img_s: dict[int, float]
    """Images per second, by batch size."""

    @property
    def best_batch(self) -> int:
        return max(self.img_s, key=self.img_s.__getitem__)

    @property
    def best_img_s(self) -> float:
        return self.img_s[self.best_batch]

    @property
    def batch1_ms(self) -> float:
        return 1000 / self.img_s[1]


def measure_throughput(embedder: Embedder | OnnxEmbedder, images: list[np.ndarray], batches: list[int],
                       seconds: float) -> ModelFigures:
    """Forward passes back to back for `seconds` per batch size, after two warm-up passes.

    They run on one worker thread, as the classifier's micro-batcher runs them: on the loaded
    shared machine, the same passes on the main thread took up to ten times longer.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference") as thread:
        return thread.submit(_throughput, embedder, images, batches, seconds).result()


def _throughput(embedder: Embedder | OnnxEmbedder, images: list[np.ndarray], batches: list[int],
                seconds: float) -> ModelFigures:
    rates = {}
    for size in batches:
        batch = [images[i % len(images)] for i in range(size)]
        for _ in range(2):
            embedder.embed_batch(batch)
        passes, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds or passes < 3:
            embedder.embed_batch(batch)
            passes += 1
        rates[size] = passes * size / elapsed
    return ModelFigures(rates)


def embed_all(embedder: Embedder, images: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([embedder.embed_batch(images[i:i + CHUNK]) for i in range(0, len(images), CHUNK)])


@dataclass(frozen=True)
class PrecisionAgreement:
    images: int
    queries: int
    catalog: int
    min_cosine: float
    mean_cosine: float
    same_top1: float
    """Share of queries whose nearest catalogue item is the same at bf16 as at fp32."""

    def summary(self) -> dict[str, float | int]:
        return {"images": self.images, "queries": self.queries, "catalog": self.catalog,
                "min_cosine": round(self.min_cosine, 5), "mean_cosine": round(self.mean_cosine, 5),
                "same_top1": round(self.same_top1, 4)}


def compare_precisions(weights: str, catalog: list[np.ndarray], queries: list[np.ndarray]) -> PrecisionAgreement:
    """The same check as the test suite's, for whatever weights are loaded."""
    vectors = {}
    for precision in TORCH_PRECISIONS:
        embedder = Embedder(weights, precision)
        vectors[precision] = (embed_all(embedder, catalog), embed_all(embedder, queries))
        del embedder
    (c32, q32), (c16, q16) = vectors["fp32"], vectors["bf16"]
    cosines = np.concatenate([(c32 * c16).sum(axis=1), (q32 * q16).sum(axis=1)])
    same = ((q32 @ c32.T).argmax(axis=1) == (q16 @ c16.T).argmax(axis=1)).mean()
    return PrecisionAgreement(len(cosines), len(queries), len(catalog), float(cosines.min()),
                              float(cosines.mean()), float(same))
