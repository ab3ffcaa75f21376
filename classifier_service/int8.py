"""PRECISION=int8: the same ResNet50, exported to ONNX, quantised on the catalogue, run by ONNX Runtime.

The indexing job exports the network with the weights the classifier runs (outputs: pool5 and
the 1000 ImageNet logits), quantises it statically (QDQ, per-channel int8 weights, u8
activations, ranges calibrated on a few hundred catalogue photos), and saves it in the index
version; the classifier loads that very file, so the catalogue and the queries go through the
same quantised model. Whether int8 is good enough is `indexing.quantise_gate`'s question.

ONNX Runtime picks its int8 kernels from the CPU's flags (VNNI where present, plain AVX2/AVX-512
otherwise) and has no switch to choose them; `plain_kernels=True` turns its graph fusions off, so
the quantised model runs as DequantizeLinear, fp32 convolution, QuantizeLinear: the same model on
reference kernels, with no int8 arithmetic at all. Slow, but a check that nothing depends on VNNI.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph, InvalidProtobuf, NoSuchFile
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from torch import nn

from classifier_service.weights import load_resnet50
from lookalike.contracts import GateFigures, ModelInfo
from lookalike.errors import QuantisationFailed, QuantisedModelInvalid
from lookalike.manifest import Preprocessing

log = logging.getLogger("lookalike.int8")

ENGINE = f"onnxruntime {ort.__version__}"
INPUT, POOL5, LOGITS = "input", "pool5", "logits"
CALIBRATION_BATCH = 8


class Pool5AndLogits(nn.Module):
    """ResNet50 with two outputs: pool5 (what we search with) and the ImageNet logits (tags)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.fc: nn.Module = network.fc  # type: ignore[assignment]  # torchvision's attributes are untyped
        network.fc = nn.Identity()  # torchvision's forward now ends at pool5, flattened
        self.trunk = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool5 = self.trunk(x)
        return pool5, self.fc(pool5)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_int8_kernels() -> str:
    """Which int8 instructions this CPU offers ONNX Runtime: said in the gate's figures and /readyz."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    for flag, name in (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI")):
        if flag in flags:
            return name
    return "AVX-512 (no VNNI)" if "avx512bw" in flags else "AVX2 (no VNNI)" if "avx2" in flags else "baseline"


def normalised(images: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """(N, crop, crop, 3) uint8 to the network's (N, 3, crop, crop) float32 input."""
    mean = np.asarray(prep.mean, np.float32) * 255
    std = np.asarray(prep.std, np.float32) * 255
    return np.ascontiguousarray(((images.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2))


def export_fp32(weights: str, model_id: str, prep: Preprocessing, path: Path) -> None:
    """The fp32 network with the weights `weights` names, as ONNX; refuses if they are not `model_id`'s."""
    resolved = load_resnet50(weights)
    if not model_id.startswith(f"{resolved.identity}-"):
        raise QuantisationFailed(f"WEIGHTS={weights} now resolves to {resolved.identity}, not the model "
                                 f"being indexed ({model_id}); run the job again.")
    example = torch.zeros(1, 3, prep.crop, prep.crop)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript-based exporter
        torch.onnx.export(Pool5AndLogits(resolved.network.eval()), (example,), str(path), input_names=[INPUT],
                          output_names=[POOL5, LOGITS], opset_version=17, dynamo=False,
                          dynamic_axes={INPUT: {0: "n"}, POOL5: {0: "n"}, LOGITS: {0: "n"}})


class CatalogueCalibration(CalibrationDataReader):
    """Feeds the quantiser's range calibration with catalogue photos, a batch at a time."""

    def __init__(self, images: Sequence[np.ndarray], prep: Preprocessing) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {INPUT: normalised(np.stack(images[i:i + CALIBRATION_BATCH]), prep)}
            for i in range(0, len(images), CALIBRATION_BATCH))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantise(weights: str, model_id: str, prep: Preprocessing, calibration: Sequence[np.ndarray], out: Path) -> str:
    """Export, then quantise statically with ranges from `calibration` photos; returns the file's sha256."""
    if not calibration:
        raise QuantisationFailed("No catalogue photo could be read to calibrate the int8 model.")
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        export_fp32(weights, model_id, prep, fp32)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), CatalogueCalibration(calibration, prep),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return file_sha256(out)


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

    precision = "int8"
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


def choose_precision(requested: str, weights: str, device: torch.device, fallback: str,
                     gate: GateFigures | None) -> tuple[str, str, list[str]]:
    """(precision to run, why, loud warnings), the one rule the indexing job and the classifier share.

    `fallback` is what the torch model runs where int8 does not: bf16 on CPUs fast at it, else fp32.
    `gate` is the index version's int8 gate, None where it has no int8 model.
    """
    if requested in ("fp32", "bf16"):
        return requested, f"PRECISION={requested}", []
    if device.type != "cpu":
        warn = [f"PRECISION=int8 ignored on {device.type}: the int8 model is for CPUs"] if requested == "int8" else []
        return fallback, f"{device.type} keeps {fallback}; int8 is for CPUs", warn
    if requested == "auto" and weights == "random":
        return fallback, (f"random weights: the int8 gate cannot judge them (every random embedding lies within "
                          f"cos 0.998 of every other), so auto keeps {fallback}"), []
    if gate is None:
        why = f"no int8 model in this index version; {fallback} instead"
        return fallback, why, [f"PRECISION=int8 but {why}"] if requested == "int8" else []
    figures = gate_summary(gate)
    if requested == "int8":
        if gate.passed:
            return "int8", f"PRECISION=int8; the gate passed ({figures})", []
        return "int8", f"PRECISION=int8 forced; the gate FAILED ({figures})", [
            f"!!! int8 forced although its gate failed: {'; '.join(gate.failures)}. Searches may differ from "
            "fp32 beyond the thresholds. !!!"]
    if gate.passed:
        return "int8", f"the int8 gate passed ({figures})", []
    return fallback, f"the int8 gate failed ({'; '.join(gate.failures)}), so {fallback} instead", []


def gate_summary(gate: GateFigures) -> str:
    return (f"mean cosine {gate.mean_cosine:.4f}, top-10 overlap {gate.top10_overlap:.3f}, "
            f"head agreement {gate.head_agreement:.3f} on {gate.images} held-out photos")
