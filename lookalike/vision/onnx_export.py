"""The indexing job's export: the torch network, with the weights the index is built with, to ONNX at fp32.

One graph answers pool5 and the 1000 ImageNet logits (`network.Pool5AndLogits`); once the job has
fitted the category head, `onnx_head` appends it, and the result is the version's `model-fp32.onnx`,
which the classifier serves through ONNX Runtime. torch is imported here, so only jobs import this.

The exporter is torch's TorchScript-based one (`dynamo=False`): the dynamo exporter needs
`onnxscript`, which is not installed, and the TorchScript one gives ONNX Runtime the graph it fuses
best. Constant folding is left to ONNX Runtime (it folds each batch norm into its convolution
when it loads the file).

The exporter is asked for the graph alone (`export_params=False`); the weights are then written
after it one tensor at a time, each a `ModelProto` holding one initializer, which protobuf reads
as their merge. Exporting with the weights inside built the whole 100 MB model three times over in
memory (the proto, its serialised copy, Python's bytes): about 290 MB at the job's peak, against
about 40 MB this way.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from torch import nn

from lookalike.errors import QuantisationFailed
from lookalike.vision.embedder import Embedder
from lookalike.vision.network import Pool5AndLogits
from lookalike.vision.onnx_engine import INPUT, LOGITS, POOL5
from lookalike.vision.weights import load_resnet50

OPSET = 17
EXPORTER = f"torch {torch.__version__.split('+')[0]} (TorchScript exporter, opset {OPSET})"


def fp32_network(embedder: Embedder) -> nn.Module:
    """The embedder's own eager network where it runs fp32 on the CPU; else its weights loaded again at fp32."""
    if embedder.precision == "fp32" and embedder.device.type == "cpu":
        return embedder.eager
    resolved = load_resnet50(embedder.weights_spec)
    if not embedder.info.model_id.startswith(f"{resolved.identity}-"):
        raise QuantisationFailed(f"WEIGHTS={embedder.weights_spec} now resolves to {resolved.identity}, not the "
                                 f"model being indexed ({embedder.info.model_id}); run the job again.")
    return Pool5AndLogits(resolved.network).eval()


def export_network(embedder: Embedder, path: Path) -> None:
    """Write the fp32 network (input `input`, outputs `pool5` and `logits`, any batch size) to `path`."""
    crop = embedder.preprocessing.crop
    network = fp32_network(embedder)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript-based exporter
        torch.onnx.export(network, (torch.zeros(1, 3, crop, crop),), str(path), input_names=[INPUT],
                          output_names=[POOL5, LOGITS], opset_version=OPSET, dynamo=False, export_params=False,
                          do_constant_folding=False, dynamic_axes={INPUT: {0: "n"}, POOL5: {0: "n"}, LOGITS: {0: "n"}})
    model = onnx.load(str(path))  # the graph alone: tens of kilobytes
    weights = network.state_dict()
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
