"""PRECISION=int8 at indexing time: the exported fp32 network quantised statically on the catalogue.

The indexing job exports the network once (`onnx_export`: pool5 and the 1000 ImageNet logits),
quantises that file (QDQ, per-channel int8 weights, u8 activations, ranges calibrated on a few
hundred catalogue photos) and saves it in the index version, where `onnx_engine` runs it. Whether
int8 is good enough is `indexing.quantise_gate`'s question. No torch here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
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
from lookalike.vision.onnx_engine import INPUT, file_sha256, normalised

CALIBRATION_BATCH = 8


class CatalogueCalibration(CalibrationDataReader):
    """Feeds the quantiser's range calibration with catalogue photos, a batch at a time."""

    def __init__(self, images: Sequence[np.ndarray], prep: Preprocessing) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {INPUT: normalised(np.stack(images[i:i + CALIBRATION_BATCH]), prep)}
            for i in range(0, len(images), CALIBRATION_BATCH))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantise(fp32: Path, prep: Preprocessing, calibration: Sequence[np.ndarray], out: Path) -> str:
    """Quantise the fp32 network statically with ranges from `calibration` photos; returns the file's sha256."""
    if not calibration:
        raise QuantisationFailed("No catalogue photo could be read to calibrate the int8 model.")
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), CatalogueCalibration(calibration, prep),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return file_sha256(out)


