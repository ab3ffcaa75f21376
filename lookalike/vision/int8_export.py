"""PRECISION=int8 at indexing time: ResNet50 exported to ONNX and quantised statically on the catalogue.

The indexing job exports the network with the weights the classifier runs (outputs: pool5 and
the 1000 ImageNet logits), quantises it (QDQ, per-channel int8 weights, u8 activations, ranges
calibrated on a few hundred catalogue photos) and saves it in the index version, where
`int8_engine` loads it. Whether int8 is good enough is `indexing.quantise_gate`'s question.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from lookalike.catalog.manifest import Preprocessing
from lookalike.errors import QuantisationFailed
from lookalike.vision.int8_engine import INPUT, LOGITS, POOL5, file_sha256, normalised
from lookalike.vision.network import Pool5AndLogits
from lookalike.vision.weights import load_resnet50

CALIBRATION_BATCH = 8


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


