"""The category head appended to the exported network, so one ONNX graph answers everything a photo needs.

Outputs added beside `pool5` and `logits`: `embedding` (pool5, L2-normalised) and `category_logits`
(`CategoryHead`'s standardisation and linear layer, the numpy `predict_proba` before its softmax).
The same is appended to the fp32 network and to its int8 copy (in fp32: the head is tiny).
Uses the `onnx` package, not torch; only the indexing job writes models.

The network is never loaded to do it: a protobuf message read from two serialized parts is their
merge (repeated fields, such as a graph's nodes, initializers and outputs, concatenated), so the
file is copied as it is and the head's few nodes are written after it as a second `ModelProto`
holding only them. Loading the 100 MB network to append 8 nodes cost the job 130 MB at its peak.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lookalike.vision.head import CategoryHead
from lookalike.vision.onnx_engine import CATEGORY_LOGITS, EMBEDDING, POOL5, file_sha256


def append_head(network: Path, head: CategoryHead, out: Path) -> str:
    """`network` with the head's outputs added, written to `out` (which may be `network`); returns its sha256."""
    graph = onnx.GraphProto()
    constants: dict[str, np.ndarray] = {
        "head_axis": np.array([1], np.int64),
        "head_eps": np.array(1e-12, np.float32),
        "head_mean": np.asarray(head.mean, np.float32),
        "head_scale": np.asarray(head.scale, np.float32),
        "head_weight": np.asarray(head.weight, np.float32),
        "head_bias": np.asarray(head.bias, np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
    graph.node.extend([
        # ReduceSum takes its axes as an input from opset 13 on, where ReduceL2's changed again at 18.
        helper.make_node("Mul", [POOL5, POOL5], ["head_squares"]),
        helper.make_node("ReduceSum", ["head_squares", "head_axis"], ["head_sum"], keepdims=1),
        helper.make_node("Sqrt", ["head_sum"], ["head_norm"]),
        helper.make_node("Max", ["head_norm", "head_eps"], ["head_safe_norm"]),
        helper.make_node("Div", [POOL5, "head_safe_norm"], [EMBEDDING]),
        helper.make_node("Sub", [EMBEDDING, "head_mean"], ["head_centred"]),
        helper.make_node("Div", ["head_centred", "head_scale"], ["head_standard"]),
        helper.make_node("Gemm", ["head_standard", "head_weight", "head_bias"], [CATEGORY_LOGITS], transB=1),
    ])
    graph.output.extend([
        helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["n", int(head.mean.shape[0])]),
        helper.make_tensor_value_info(CATEGORY_LOGITS, TensorProto.FLOAT, ["n", len(head.categories)]),
    ])
    if out != network:
        shutil.copyfile(network, out)
    with out.open("ab") as fh:
        fh.write(onnx.ModelProto(graph=graph).SerializeToString())
    return file_sha256(out)
