"""The serving runtime: an index version's ONNX network (fp32 or int8), run by ONNX Runtime alone.

The indexing job exports the network (`lookalike.vision.onnx_export`) with the category head
appended (`lookalike.vision.onnx_head`), so one graph answers a photo's unit embedding, its
category logits and its 1000 ImageNet logits. The classifier and the job's catalogue pass both run
the file through this module, so catalogue and queries go through the same graph. Nothing here
imports torch: the serving processes never map libtorch.

ONNX Runtime picks its int8 kernels from the CPU's flags (VNNI where present, plain AVX2/AVX-512
otherwise) and has no switch to choose them; `plain_kernels=True` turns its graph fusions off, so
a quantised model runs as DequantizeLinear, fp32 convolution, QuantizeLinear: the same model on
reference kernels, with no int8 arithmetic at all. Slow, but a check that nothing depends on VNNI.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph, InvalidProtobuf, NoSuchFile

from lookalike.catalog.manifest import Preprocessing
from lookalike.contracts import ModelInfo, Precision
from lookalike.errors import IndexMismatch, NetworkModelInvalid, QuantisedModelInvalid

log = logging.getLogger("lookalike.onnx")

ENGINE = f"onnxruntime {ort.__version__}"
INPUT, POOL5, LOGITS = "input", "pool5", "logits"
"""The network's input and outputs: raw pool5 and the 1000 ImageNet logits."""
EMBEDDING, CATEGORY_LOGITS = "embedding", "category_logits"
"""What the category head appends: the L2-normalised pool5, and the catalogue's category logits."""
CUDA = "CUDAExecutionProvider"
MAX_PASS = 8
"""Most images in one pass: ResNet50's activations grow with the batch (about 100 MB at 8), and on a CPU
a pass over 8 runs as fast per image as one over 16. Larger batches are run 8 at a time."""


@dataclass(frozen=True)
class RuntimeMemory:
    """How ONNX Runtime holds memory between passes.

    The arena keeps every block it ever allocated for reuse, and memory-pattern planning keeps
    one plan (and its buffers) per input shape: both grow with the batch sizes met and never
    shrink. Off, each pass allocates what it needs from malloc and frees it after.
    """

    cpu_arena: bool = False
    mem_pattern: bool = False


LEAN = RuntimeMemory()
"""Arena and memory patterns off: what the job, and the classifier at fp32, run with (docs/performance.md)."""


def served_memory(precision: Precision, arena: bool | None) -> RuntimeMemory:
    """How the classifier holds memory for a graph at `precision`; `arena` is CLASSIFIER_MEMORY_ARENA.

    Unset, the int8 graph keeps the arena (without memory patterns): its activations are a quarter of
    fp32's, and without the arena it ran 8 % slower than int8 served before (docs/performance.md); at
    fp32 the arena costs about 50 MB and gains nothing measurable. True or false sets both for either.
    """
    if arena is None:
        return RuntimeMemory(cpu_arena=precision == "int8")
    return RuntimeMemory(cpu_arena=arena, mem_pattern=arena)


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


def cuda_available() -> bool:
    """Whether `onnxruntime-gpu` with a usable CUDA provider is installed; never required."""
    return CUDA in ort.get_available_providers()


def runtime_device() -> str:
    """`cuda` where ONNX Runtime can run fp32 on a GPU, else `cpu`: what the precision rule is told."""
    return "cuda" if cuda_available() else "cpu"


def session_options(threads: int, plain_kernels: bool, memory: RuntimeMemory = LEAN) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = memory.cpu_arena
    options.enable_mem_pattern = memory.mem_pattern
    # Threads that spin between kernels would take the cores the uploads are decoded on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    if plain_kernels:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


class OnnxEmbedder:
    """Images in, L2-normalised pool5 embeddings out (and logits), from one ONNX file of an index version.

    `precision` is what the file holds: `fp32` (the exported network) or `int8` (its quantised copy).
    A file whose sha256 differs from the manifest's is refused, as is one ONNX Runtime cannot load.
    """

    def __init__(self, path: Path, base: ModelInfo, preprocessing: Preprocessing, *, precision: Precision = "fp32",
                 sha256: str | None = None, threads: int = 0, plain_kernels: bool = False,
                 memory: RuntimeMemory = LEAN, use_cuda: bool = False, max_pass: int = MAX_PASS) -> None:
        invalid: type[IndexMismatch] = QuantisedModelInvalid if precision == "int8" else NetworkModelInvalid
        what = "int8 model" if precision == "int8" else "fp32 network"
        if not path.is_file():
            raise invalid(f"The index version has no {what} at {path}. Re-index.")
        if sha256 is not None and (found := file_sha256(path)) != sha256:
            raise invalid(f"{path} has sha256 {found[:12]}…, the manifest says {sha256[:12]}…: "
                          f"the {what} was changed after indexing. Re-index.")
        self.device = "cuda" if use_cuda and precision != "int8" and cuda_available() else "cpu"
        providers = [CUDA, "CPUExecutionProvider"] if self.device == "cuda" else ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads, plain_kernels, memory),
                                                providers=providers)
        except (OrtFail, InvalidGraph, InvalidProtobuf, NoSuchFile) as exc:
            raise invalid(f"ONNX Runtime cannot load the {what} {path}: {exc}") from exc
        outputs = {o.name for o in self.session.get_outputs()}
        self.has_head = {EMBEDDING, CATEGORY_LOGITS} <= outputs
        self.path = path
        self.sha256 = sha256
        self.precision: Precision = precision
        self.preprocessing = preprocessing
        self.plain_kernels = plain_kernels
        self.max_pass = max_pass
        self.info = ModelInfo(weights=base.weights, model_id=base.model_id, precision=precision)
        self.cache_key = base.model_id if precision == "fp32" else \
            f"{base.model_id}-int8-{(sha256 or file_sha256(path))[:12]}"
        """The embedding cache's key: int8 vectors differ with every re-calibrated model."""

    def _run(self, names: list[str], images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs `names` for `images`, at most `max_pass` images a pass, so memory stays bounded."""
        parts = [self.session.run(names, {INPUT: normalised(np.stack(images[at:at + self.max_pass]),
                                                            self.preprocessing)})
                 for at in range(0, len(images), self.max_pass)]
        return [np.concatenate([part[i] for part in parts]) for i in range(len(names))]

    @staticmethod
    def _unit(pool5: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(pool5, axis=1, keepdims=True)
        return (pool5 / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed_with_logits(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Unit pool5 vectors and the 1000 ImageNet logits, from one forward pass."""
        pool5, logits = self._run([POOL5, LOGITS], images)
        return self._unit(pool5), logits

    def embed_with_categories(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Unit embeddings and the category head's logits, from one pass of the version's graph."""
        if not self.has_head:
            raise NetworkModelInvalid(f"{self.path} holds no category head; re-index.")
        embedding, category_logits = self._run([EMBEDDING, CATEGORY_LOGITS], images)
        return embedding.astype(np.float32), category_logits

    def embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(crop, crop, 3) uint8 arrays to an (N, 2048) float32 array of unit vectors."""
        return self._unit(self._run([POOL5], images)[0])

    def embed_with_imagenet(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Unit embeddings and ImageNet class probabilities, one pass."""
        embeddings, logits = self.embed_with_logits(images)
        return embeddings, softmax(logits)

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """One pass per size, so the first shopper does not pay for ONNX Runtime's first allocations."""
        crop = self.preprocessing.crop
        for size in batch_sizes:
            self.embed_batch(list(np.zeros((size, crop, crop, 3), np.uint8)))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
