"""PRECISION=int8 at serving time: the index version's quantised ResNet50, run by ONNX Runtime.

`int8_export` makes the model when the job indexes; `onnx_engine.OnnxEmbedder` runs it, in the
classifier and in the job alike. This module keeps the int8 names the rest of the code knows.
"""

from __future__ import annotations

from pathlib import Path

from lookalike.catalog.manifest import Preprocessing
from lookalike.contracts import ModelInfo
from lookalike.vision.onnx_engine import (
    ENGINE,
    INPUT,
    LEAN,
    LOGITS,
    POOL5,
    OnnxEmbedder,
    RuntimeMemory,
    file_sha256,
    normalised,
    session_options,
)

__all__ = ["ENGINE", "INPUT", "LOGITS", "POOL5", "Int8Embedder", "file_sha256", "normalised", "session_options"]


class Int8Embedder(OnnxEmbedder):
    """The quantised model: `OnnxEmbedder` at int8."""

    def __init__(self, path: Path, base: ModelInfo, preprocessing: Preprocessing, *, sha256: str | None = None,
                 threads: int = 0, plain_kernels: bool = False, memory: RuntimeMemory = LEAN) -> None:
        super().__init__(path, base, preprocessing, precision="int8", sha256=sha256, threads=threads,
                         plain_kernels=plain_kernels, memory=memory)
