"""Which precision the network runs at: one rule for the indexing job and the classifier.

`fp32` everywhere; `bf16` where the CPU (AVX-512 BF16, AMX) or GPU is fast at it; `int8` where
the index version holds a quantised model whose gate passed. `auto` picks among them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import torch

from lookalike.contracts import PRECISION_SETTINGS, GateFigures, Precision, PrecisionSetting

TorchPrecision = Literal["fp32", "bf16"]
"""What the torch model runs at; int8 is the quantised ONNX model's (`int8_engine`)."""
TORCH_PRECISIONS: tuple[TorchPrecision, ...] = get_args(TorchPrecision)


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPUs where bf16 inference beats fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: PrecisionSetting, device: torch.device) -> TorchPrecision:
    """What the torch model runs: `int8` is served by `int8_engine`, and asks this for its fallback."""
    if requested in ("fp32", "bf16"):
        return requested
    if requested not in PRECISION_SETTINGS:
        raise ValueError(f"PRECISION must be one of {', '.join(PRECISION_SETTINGS)}, not {requested!r}")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


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


def choose_precision(requested: PrecisionSetting, weights: str, device: torch.device, fallback: TorchPrecision,
                     gate: GateFigures | None) -> tuple[Precision, str, list[str]]:
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
