"""Which precision the network runs at: one rule for the indexing job and the classifier.

ONNX Runtime runs the index version's own files: `fp32` everywhere, `int8` where the version
holds a quantised model whose gate passed. `auto` picks between them. `bf16` was the fused torch
graph's precision; ONNX Runtime has no fast bf16 CPU kernels, so PRECISION=bf16 now runs fp32 and
says so. No torch here: the classifier imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from lookalike.contracts import PRECISION_SETTINGS, GateFigures, Precision, PrecisionSetting

TorchPrecision = Literal["fp32", "bf16"]
"""What the torch model (`embedder.Embedder`: evaluation and bench only) runs at."""
TORCH_PRECISIONS: tuple[TorchPrecision, ...] = get_args(TorchPrecision)


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPUs where bf16 inference beats fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def choose_precision(requested: PrecisionSetting, weights: str, device: str,
                     gate: GateFigures | None) -> tuple[Precision, str, list[str]]:
    """(precision to run, why, loud warnings), the one rule the indexing job and the classifier share.

    `device` is where ONNX Runtime runs (`cpu`, or `cuda` with onnxruntime-gpu); `gate` is the index
    version's int8 gate, None where it has no int8 model. Where int8 does not serve, fp32 does.
    """
    if requested not in PRECISION_SETTINGS:
        raise ValueError(f"PRECISION must be one of {', '.join(PRECISION_SETTINGS)}, not {requested!r}")
    if requested == "fp32":
        return "fp32", "PRECISION=fp32", []
    if requested == "bf16":
        return "fp32", "PRECISION=bf16 runs fp32: ONNX Runtime serves fp32 or int8", [
            "PRECISION=bf16 is no longer served (it was the torch graph's); fp32 instead"]
    if device != "cpu":
        warn = [f"PRECISION=int8 ignored on {device}: the int8 model is for CPUs"] if requested == "int8" else []
        return "fp32", f"{device} runs fp32; int8 is for CPUs", warn
    if requested == "auto" and weights == "random":
        return "fp32", ("random weights: the int8 gate cannot judge them (every random embedding lies within "
                        "cos 0.998 of every other), so auto keeps fp32"), []
    if gate is None:
        why = "no int8 model in this index version; fp32 instead"
        return "fp32", why, [f"PRECISION=int8 but {why}"] if requested == "int8" else []
    figures = gate_summary(gate)
    if requested == "int8":
        if gate.passed:
            return "int8", f"PRECISION=int8; the gate passed ({figures})", []
        return "int8", f"PRECISION=int8 forced; the gate FAILED ({figures})", [
            f"!!! int8 forced although its gate failed: {'; '.join(gate.failures)}. Searches may differ from "
            "fp32 beyond the thresholds. !!!"]
    if gate.passed:
        return "int8", f"the int8 gate passed ({figures})", []
    return "fp32", f"the int8 gate failed ({'; '.join(gate.failures)}), so fp32 instead", []


def gate_summary(gate: GateFigures) -> str:
    return (f"mean cosine {gate.mean_cosine:.4f}, top-10 overlap {gate.top10_overlap:.3f}, "
            f"head agreement {gate.head_agreement:.3f} on {gate.images} held-out photos")
