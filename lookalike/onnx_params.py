"""torch.onnx.export without copies of the weights: the graph first, then each parameter appended after it.

The exporter is asked for the graph alone (`export_params=False`); the weights are then written after
it one tensor at a time, each a `ModelProto` holding one initializer, which protobuf reads as their
merge. Exporting with the weights inside builds the whole model three times over in memory (the
proto, its serialised copy, Python's bytes): for ResNet50 about 290 MB at the job's peak, against
about 40 MB this way. torch is imported here, so only jobs import this.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import numpy_helper
from torch import nn


def export_appending_weights(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path,
                             **options: Any) -> None:
    """`torch.onnx.export(module, example, path, **options)` with the TorchScript exporter, weights appended."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation, and its tracer's notes
        torch.onnx.export(module, example, str(path), dynamo=False, export_params=False, do_constant_folding=False,
                          **options)
    model = onnx.load(str(path))  # the graph alone: tens of kilobytes
    weights = module.state_dict()
    # Without its parameters the graph takes them as inputs (identical ones shared under one name); as
    # initializers that are not inputs, they are constants ONNX Runtime may fold and pre-pack.
    named = [i.name for i in model.graph.input if i.name in weights]
    kept = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    with path.open("wb") as fh:
        fh.write(model.SerializeToString())
        for name in named:
            tensor = weights[name].detach().to("cpu", torch.float32).contiguous().numpy()
            fh.write(onnx.ModelProto(graph=onnx.GraphProto(
                initializer=[numpy_helper.from_array(tensor, name)])).SerializeToString())
