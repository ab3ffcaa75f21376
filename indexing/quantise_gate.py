"""The int8 gate: quantise on the catalogue, then check int8 against fp32 on photos it was not calibrated on.

Three figures on a held-out sample, each against a threshold (INT8_MIN_* settings):
  * the cosine between each photo's fp32 and int8 embedding;
  * the overlap of each photo's 10 nearest neighbours within its category, fp32 against int8;
  * the agreement of the category head's decision (a head fitted on the sample's fp32 embeddings).
int8 is served only when all three clear their thresholds (or the operator forces PRECISION=int8).
With `random` weights every embedding lies within cos 0.998 of every other, so these figures mean
little there; the thresholds are for real weights.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.catalog import CatalogScan, Entry
from lookalike.catalog.layout import INT8_MODEL
from lookalike.catalog.manifest import Int8Model, Preprocessing
from lookalike.contracts import GateFigures
from lookalike.errors import ImageRejected
from lookalike.settings import MAX_PIXELS
from lookalike.vision.head_training import fit_head
from lookalike.vision.int8_engine import ENGINE, Int8Embedder
from lookalike.vision.int8_export import quantise
from lookalike.vision.onnx_engine import OnnxEmbedder
from lookalike.vision.precision import cpu_int8_kernels
from lookalike.vision.preprocess import load_model_input

log = logging.getLogger("lookalike.indexing")

TOP_K = 10
Quantiser = Callable[[Path, Preprocessing, Sequence[np.ndarray], Path], str]
"""(the exported fp32 network, preprocessing, calibration photos, output file) -> the file's sha256."""


@dataclass(frozen=True)
class GateThresholds:
    mean_cosine: float = 0.98
    top10_overlap: float = 0.9
    head_agreement: float = 0.98


@dataclass(frozen=True)
class Quantised:
    embedder: Int8Embedder
    record: Int8Model


def split_sample(entries: Sequence[Entry], calibration: int, held_out: int) -> tuple[list[Entry], list[Entry]]:
    """Calibration and held-out photos, disjoint, taken in turn from each category.

    Within a category the order is a hash of the file name: spread over its products, and the
    same photos every run for the same catalogue (so the same model, and the cache still hits).
    """
    by_category: dict[str, list[Entry]] = {}
    for entry in entries:
        by_category.setdefault(entry.category, []).append(entry)
    for members in by_category.values():
        members.sort(key=lambda e: hashlib.sha256(e.file.encode()).hexdigest())
    in_turn = [members[i] for i in range(max(map(len, by_category.values()), default=0))
               for members in by_category.values() if i < len(members)]
    # Hold out first, so a small catalogue still gets its gate sample from every category.
    held = in_turn[:held_out] if len(in_turn) > held_out + calibration else in_turn[: len(in_turn) // 3]
    rest = in_turn[len(held):]
    return rest[:calibration], held


def decode_sample(root: Path, entries: Sequence[Entry], prep: Preprocessing) -> tuple[list[np.ndarray], list[str]]:
    """Model inputs and categories of the photos that decode; the others are left out (the job reports them)."""
    images, categories = [], []
    for entry in entries:
        try:
            images.append(load_model_input((root / entry.file).read_bytes(), prep, max_pixels=MAX_PIXELS))
        except (ImageRejected, OSError):
            continue
        categories.append(entry.category)
    return images, categories


def embed_in_chunks(embedder: OnnxEmbedder, images: Sequence[np.ndarray], size: int = 16) -> np.ndarray:
    return np.concatenate([embedder.embed_batch(images[i:i + size]) for i in range(0, len(images), size)])


def nearest(vectors: np.ndarray, k: int) -> np.ndarray:
    """Each row's k nearest other rows, by cosine."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def top_k_overlap(a: np.ndarray, b: np.ndarray, categories: Sequence[str], k: int = TOP_K) -> float:
    """Mean share of each photo's k nearest (itself left out, within its category) that a and b agree on."""
    labels = np.asarray(categories)
    shares: list[float] = []
    for category in sorted(set(categories)):
        members = np.flatnonzero(labels == category)
        kk = min(k, len(members) - 1)
        if kk >= 1:
            shares += [len(set(x) & set(y)) / kk
                       for x, y in zip(nearest(a[members], kk), nearest(b[members], kk))]
    return float(np.mean(shares)) if shares else 1.0


def measure(fp32: np.ndarray, int8: np.ndarray, categories: Sequence[str], thresholds: GateThresholds) -> GateFigures:
    """The three figures and the verdict; each failure said in words."""
    cosines = (fp32 * int8).sum(axis=1)
    names = sorted(set(categories))
    labels = np.array([names.index(c) for c in categories])
    head = fit_head(fp32, labels, names)
    agreement = float((head.predict_proba(fp32).argmax(1) == head.predict_proba(int8).argmax(1)).mean())
    figures = {"mean_cosine": float(cosines.mean()), "top10_overlap": top_k_overlap(fp32, int8, categories),
               "head_agreement": agreement}
    limits = {"mean_cosine": thresholds.mean_cosine, "top10_overlap": thresholds.top10_overlap,
              "head_agreement": thresholds.head_agreement}
    failures = [f"{name.replace('_', ' ')} {value:.4f} < {limits[name]}" for name, value in figures.items()
                if not value >= limits[name]]
    return GateFigures(images=len(categories), min_cosine=float(cosines.min()), thresholds=limits,
                       passed=not failures, failures=failures, int8_kernels=cpu_int8_kernels(), **figures)


def quantise_and_gate(scan: CatalogScan, fp32: OnnxEmbedder, network: Path, build_dir: Path, *,
                      calibration_images: int, gate_images: int, thresholds: GateThresholds, threads: int = 0,
                      quantiser: Quantiser = quantise) -> Quantised:
    """Quantise the exported `network` on part of the catalogue into the build folder, then gate it against
    the same network at fp32 (`fp32`, as the classifier would serve it) on another part."""
    calibration, held_out = split_sample(scan.entries, calibration_images, gate_images)
    prep = fp32.preprocessing
    calibration_inputs, calibration_categories = decode_sample(scan.root, calibration, prep)
    log.info("int8: quantising with %d catalogue photos (%s)", len(calibration_inputs), ENGINE)
    path = build_dir / INT8_MODEL
    sha256 = quantiser(network, prep, calibration_inputs, path)
    int8 = Int8Embedder(path, fp32.info, prep, sha256=sha256, threads=threads)
    gate_inputs, gate_categories = decode_sample(scan.root, held_out, prep)
    figures = measure(embed_in_chunks(fp32, gate_inputs), embed_in_chunks(int8, gate_inputs), gate_categories,
                      thresholds)
    log.info("int8 gate on %d held-out photos: mean cosine %.4f, top-10 overlap %.3f, head agreement %.3f: %s",
             figures.images, figures.mean_cosine, figures.top10_overlap, figures.head_agreement,
             "passed" if figures.passed else "FAILED (" + "; ".join(figures.failures) + ")")
    record = Int8Model(file=INT8_MODEL, sha256=sha256, engine=ENGINE,
                       calibration_images=dict(Counter(calibration_categories)), gate=figures)
    return Quantised(int8, record)
