"""The indexing job's export: the torch network, with the weights the index is built with, to ONNX at fp32.

One graph answers pool5 and the 1000 ImageNet logits (`network.Pool5AndLogits`); once the job has
fitted the category head, `onnx_head` appends it, and the result is the version's `model-fp32.onnx`,
which the classifier serves through ONNX Runtime. torch is imported here, so only jobs import this.

The exporter is torch's TorchScript-based one (`dynamo=False`): the dynamo exporter needs
`onnxscript`, which is not installed, and the TorchScript one gives ONNX Runtime the graph it fuses
best. Constant folding is left to ONNX Runtime (it folds each batch norm into its convolution
when it loads the file).

The weights are appended to the exported graph one tensor at a time (`lookalike.onnx_params`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lookalike.errors import QuantisationFailed
from lookalike.onnx_params import export_appending_weights
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
    export_pool5_and_logits(fp32_network(embedder), embedder.preprocessing.crop, path)


def export_pool5_and_logits(network: nn.Module, crop: int, path: Path) -> None:
    """`network` (a `Pool5AndLogits` at fp32 on the CPU, in eval mode) to `path`."""
    export_appending_weights(network, (torch.zeros(1, 3, crop, crop),), path, input_names=[INPUT],
                             output_names=[POOL5, LOGITS], opset_version=OPSET,
                             dynamic_axes={INPUT: {0: "n"}, POOL5: {0: "n"}, LOGITS: {0: "n"}})
