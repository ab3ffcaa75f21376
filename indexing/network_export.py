"""The network an index version serves: exported from torch once, run by ONNX Runtime for the catalogue,
quantised and gated where int8 may serve, and written with the category head appended.

torch loads the weights and exports (`indexing.torch_steps`, `lookalike.vision.onnx_export`), in a
process of its own when the job runs as a program; from there on the job runs
the exported file, as the classifier will, so the catalogue and the queries go through one graph.
The network-only export lives in the build folder until the head is fitted, then gives way to
`model-fp32.onnx` (and `model-int8.onnx`), each with the head appended and its sha256 in the manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from indexing.catalog import CatalogScan
from indexing.quantise_gate import GateThresholds, Quantised, Quantiser, quantise_and_gate
from indexing.torch_steps import SourceModel
from lookalike.catalog.layout import FP32_MODEL, INT8_MODEL
from lookalike.catalog.manifest import Int8Model, NetworkModel
from lookalike.vision.head import CategoryHead
from lookalike.vision.int8_export import quantise
from lookalike.vision.onnx_engine import OnnxEmbedder
from lookalike.vision.onnx_head import append_head
from lookalike.vision.precision import choose_precision, gate_summary

log = logging.getLogger("lookalike.indexing")

JOB_PASS = 4
"""Images per ONNX Runtime pass in the job: half the classifier's 8, about 50 MB less at the job's peak; a CPU
runs ResNet50 at 4 about as fast per image as at 8."""

NETWORK_ONLY = ".network-fp32.onnx"
"""The export before the head is fitted: in the build folder only, never published."""


@dataclass(frozen=True)
class Int8Options:
    """How PRECISION=int8 and auto quantise and gate (see `indexing.quantise_gate`)."""

    calibration_images: int = 300
    gate_images: int = 200
    thresholds: GateThresholds = GateThresholds()
    quantiser: Quantiser | None = None
    """What quantises the exported network (default `lookalike.vision.int8_export.quantise`); tests break it."""


@dataclass(frozen=True)
class ExportedNetwork:
    """The fp32 network as exported (no head yet), and ONNX Runtime running it."""

    path: Path
    fp32: OnnxEmbedder
    exporter: str
    """What exported it (torch's version, the exporter, the opset), for the manifest."""


def load_exported_network(source: SourceModel, path: Path) -> ExportedNetwork:
    """The network exported to `path` (the build folder's `NETWORK_ONLY`), loaded in ONNX Runtime."""
    log.info("exported the network to ONNX (%s)", source.exporter)
    return ExportedNetwork(path, OnnxEmbedder(path, source.info, source.preprocessing, max_pass=JOB_PASS),
                           source.exporter)


def choose_catalogue_model(scan: CatalogScan, source: SourceModel, network: ExportedNetwork, build_dir: Path,
                           options: Int8Options) -> tuple[OnnxEmbedder, Quantised | None, str, list[str]]:
    """Quantise and gate where PRECISION asks for int8 (or auto may pick it); then the shared precision rule."""
    requested = source.requested_precision
    _, reason, warnings = choose_precision(requested, source.info.weights, network.fp32.device, None)
    worth_trying = network.fp32.device == "cpu" and (
        requested == "int8" or (requested == "auto" and source.info.weights != "random"))
    if not worth_trying:
        return network.fp32, None, reason, warnings
    quantised = quantise_and_gate(scan, network.fp32, network.path, build_dir,
                                  calibration_images=options.calibration_images, gate_images=options.gate_images,
                                  thresholds=options.thresholds, quantiser=options.quantiser or quantise)
    precision, reason, warnings = choose_precision(requested, source.info.weights, network.fp32.device,
                                                   quantised.record.gate)
    return (quantised.embedder if precision == "int8" else network.fp32), quantised, reason, warnings


def compatibility(precision: str, quantised: Quantised | None) -> str:
    if quantised is None:
        return f"catalogue embedded at {precision} through ONNX Runtime; queries run the same graph"
    return (f"catalogue embedded at {precision}; queries at another precision agree with it only within the "
            f"int8 gate's figures: {gate_summary(quantised.record.gate)}")


def write_served_graphs(build_dir: Path, head: CategoryHead, network: ExportedNetwork,
                        quantised: Quantised | None) -> tuple[NetworkModel, Int8Model | None]:
    """`model-fp32.onnx` (and the int8 model) with the head appended; the network-only export removed."""
    record = NetworkModel(file=FP32_MODEL, sha256=append_head(network.path, head, build_dir / FP32_MODEL),
                          exporter=network.exporter)
    int8 = None
    if quantised is not None:
        int8_path = build_dir / quantised.record.file
        int8 = quantised.record.model_copy(update={"sha256": append_head(int8_path, head, int8_path)})
    network.path.unlink(missing_ok=True)
    assert int8 is None or int8.file == INT8_MODEL
    return record, int8
