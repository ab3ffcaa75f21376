"""torch.onnx.export without copies of the weights: the graph first, then each parameter appended after it.

The exporter is asked for the graph alone (`export_params=False`); the weights are then written after
it one tensor at a time, each a `ModelProto` holding one initializer, which protobuf reads as their
merge. Exporting with the weights inside builds the whole model three times over in memory (the
proto, its serialised copy, Python's bytes): for ResNet50 about 290 MB at the job's peak, against
about 40 MB this way. Even one tensor costs three copies through protobuf (its message, the encoder's
buffer, the bytes), 140 MB at once for the sentence model's 47 MB word-piece table; so each tensor's
small fields go through protobuf and its data is written from the tensor's own memory, framed by
hand (`_framed`). torch is imported here, so only jobs import this.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
import torch
from onnx import helper
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
            write_initializer(fh, name, weights[name].detach().to("cpu", torch.float32).contiguous().numpy())


# Field numbers in onnx.proto: ModelProto.graph, GraphProto.initializer, TensorProto.raw_data.
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9


def write_initializer(fh: BinaryIO, name: str, array: np.ndarray) -> None:
    """Append `ModelProto(graph=GraphProto(initializer=[array as `name`]))`, the data written in place."""
    fields = onnx.TensorProto(name=name, dims=array.shape,
                              data_type=helper.np_dtype_to_tensor_dtype(array.dtype)).SerializeToString()
    data = np.ascontiguousarray(array).data.cast("B")
    tensor = fields + _framed(_TENSOR_RAW_DATA, data.nbytes)
    tensor_size = len(tensor) + data.nbytes
    graph = _framed(_GRAPH_INITIALIZER, tensor_size)
    fh.write(_framed(_MODEL_GRAPH, len(graph) + tensor_size) + graph + tensor)
    fh.write(data)


def _framed(field: int, size: int) -> bytes:
    """The key and length that precede a length-delimited field of `size` bytes (protobuf's wire format)."""
    return _varint(field << 3 | 2) + _varint(size)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
