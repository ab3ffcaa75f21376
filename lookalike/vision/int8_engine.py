"""PRECISION=int8 at serving time: the index version's quantised ResNet50, run by ONNX Runtime.

`int8_export` makes the model when the job indexes; this module loads and runs it, in the
classifier and in the job alike, so the catalogue and the queries go through the same file.

ONNX Runtime picks its int8 kernels from the CPU's flags (VNNI where present, plain AVX2/AVX-512
otherwise) and has no switch to choose them; `plain_kernels=True` turns its graph fusions off, so
the quantised model runs as DequantizeLinear, fp32 convolution, QuantizeLinear: the same model on
reference kernels, with no int8 arithmetic at all. Slow, but a check that nothing depends on VNNI.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph, InvalidProtobuf, NoSuchFile

from lookalike.catalog.manifest import Preprocessing
from lookalike.contracts import ModelInfo, Precision
from lookalike.errors import QuantisedModelInvalid

log = logging.getLogger("lookalike.int8")

ENGINE = f"onnxruntime {ort.__version__}"
INPUT, POOL5, LOGITS = "input", "pool5", "logits"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalised(images: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """(N, crop, crop, 3) uint8 to the network's (N, 3, crop, crop) float32 input."""
    mean = np.asarray(prep.mean, np.float32) * 255
    std = np.asarray(prep.std, np.float32) * 255
    return np.ascontiguousarray(((images.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2))


def session_options(threads: int, plain_kernels: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Threads that spin between kernels would take the cores the uploads are decoded on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    if plain_kernels:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


class Int8Embedder:
    """Images in, L2-normalised pool5 embeddings out, from the quantised model: `Embedder`'s interface."""

    precision: Precision = "int8"
    device = torch.device("cpu")

    def __init__(self, path: Path, base: ModelInfo, preprocessing: Preprocessing, *, sha256: str | None = None,
                 threads: int = 0, plain_kernels: bool = False) -> None:
        if sha256 is not None and (found := file_sha256(path)) != sha256:
            raise QuantisedModelInvalid(f"{path} has sha256 {found[:12]}…, the manifest says {sha256[:12]}…: "
                                        "the int8 model was changed after indexing. Re-index.")
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads, plain_kernels),
                                                providers=["CPUExecutionProvider"])
        except (OrtFail, InvalidGraph, InvalidProtobuf, NoSuchFile) as exc:
            raise QuantisedModelInvalid(f"ONNX Runtime cannot load the int8 model {path}: {exc}") from exc
        self.path = path
        self.sha256 = sha256
        self.preprocessing = preprocessing
        self.plain_kernels = plain_kernels
        self.info = ModelInfo(weights=base.weights, model_id=base.model_id, precision="int8")
        self.cache_key = f"{base.model_id}-int8-{(sha256 or file_sha256(path))[:12]}"
        """The embedding cache's key: int8 vectors differ with every re-calibrated model."""

    def embed_with_logits(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Unit pool5 vectors and the 1000 ImageNet logits, from one forward pass."""
        pool5, logits = self.session.run([POOL5, LOGITS], {INPUT: normalised(np.stack(images), self.preprocessing)})
        norms = np.linalg.norm(pool5, axis=1, keepdims=True)
        return (pool5 / np.maximum(norms, 1e-12)).astype(np.float32), logits

    def embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(crop, crop, 3) uint8 arrays to an (N, 2048) float32 array of unit vectors."""
        return self.embed_with_logits(images)[0]

    def embed_with_imagenet(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """As `Embedder.embed_with_imagenet`: unit embeddings and ImageNet class probabilities, one pass."""
        embeddings, logits = self.embed_with_logits(images)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return embeddings, (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """One pass per size, so the first shopper does not pay for ONNX Runtime's first allocations."""
        crop = self.preprocessing.crop
        for size in batch_sizes:
            self.embed_batch(list(np.zeros((size, crop, crop, 3), np.uint8)))


