"""The network an index version serves: exported from torch once, run by ONNX Runtime for the catalogue,
quantised and gated where int8 may serve, and written with the category head appended.

torch loads the weights and exports (`lookalike.vision.onnx_export`); from there on the job runs
the exported file, as the classifier will, so the catalogue and the queries go through one graph.
The network-only export lives in the build folder until the head is fitted, then gives way to
`model-fp32.onnx` (and `model-int8.onnx`), each with the head appended and its sha256 in the manifest.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path

from indexing.catalog import CatalogScan
from indexing.quantise_gate import GateThresholds, Quantised, Quantiser, quantise_and_gate
from lookalike.catalog.layout import FP32_MODEL, INT8_MODEL
from lookalike.catalog.manifest import Int8Model, NetworkModel
from lookalike.heap_trim import trim_heap
from lookalike.vision.embedder import Embedder
from lookalike.vision.head import CategoryHead
from lookalike.vision.int8_export import quantise
from lookalike.vision.onnx_engine import OnnxEmbedder
from lookalike.vision.onnx_export import EXPORTER, export_network
from lookalike.vision.onnx_head import append_head
from lookalike.vision.precision import choose_precision, gate_summary

log = logging.getLogger("lookalike.indexing")

JOB_PASS = 4
"""Images per ONNX Runtime pass in the job: half the classifier's 8, about 50 MB less at the job's peak, where
torch's libraries already take 700 MB; a CPU runs ResNet50 at 4 about as fast per image as at 8."""

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


def export_catalogue_network(embedder: Embedder, build_dir: Path, *, release_torch: bool) -> ExportedNetwork:
    """Export the embedder's network into the build folder and load it in ONNX Runtime.

    `release_torch`: the job made the embedder for this run, so its torch network is dropped once
    exported, and its memory given back before the catalogue is embedded.
    """
    path = build_dir / NETWORK_ONLY
    export_network(embedder, path)
    if release_torch:
        embedder.release_network()
        gc.collect()
        trim_heap()
    log.info("exported the network to ONNX (%s)", EXPORTER)
    return ExportedNetwork(path, OnnxEmbedder(path, embedder.info, embedder.preprocessing, max_pass=JOB_PASS))


def choose_catalogue_model(scan: CatalogScan, embedder: Embedder, network: ExportedNetwork, build_dir: Path,
                           options: Int8Options) -> tuple[OnnxEmbedder, Quantised | None, str, list[str]]:
    """Quantise and gate where PRECISION asks for int8 (or auto may pick it); then the shared precision rule."""
    requested = embedder.requested_precision
    _, reason, warnings = choose_precision(requested, embedder.info.weights, network.fp32.device, None)
    worth_trying = network.fp32.device == "cpu" and (
        requested == "int8" or (requested == "auto" and embedder.info.weights != "random"))
    if not worth_trying:
        return network.fp32, None, reason, warnings
    quantised = quantise_and_gate(scan, network.fp32, network.path, build_dir,
                                  calibration_images=options.calibration_images, gate_images=options.gate_images,
                                  thresholds=options.thresholds, quantiser=options.quantiser or quantise)
    precision, reason, warnings = choose_precision(requested, embedder.info.weights, network.fp32.device,
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
                          exporter=EXPORTER)
    int8 = None
    if quantised is not None:
        int8_path = build_dir / quantised.record.file
        int8 = quantised.record.model_copy(update={"sha256": append_head(int8_path, head, int8_path)})
    network.path.unlink(missing_ok=True)
    assert int8 is None or int8.file == INT8_MODEL
    return record, int8
