"""An exported graph's weights, appended one tensor at a time and written from the tensor's own memory."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from lookalike.onnx_params import export_appending_weights, write_initializer


@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4), (300, 129)])
def test_an_initializer_is_written_byte_for_byte_as_protobuf_writes_it(shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    written = io.BytesIO()
    write_initializer(written, "layer.weight", array)
    expected = onnx.ModelProto(graph=onnx.GraphProto(initializer=[numpy_helper.from_array(array, "layer.weight")]))
    assert written.getvalue() == expected.SerializeToString()


def _peak_rss_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


def test_a_large_tensor_is_written_without_copies_of_it() -> None:
    array = np.ones((64, 1024, 1024), np.float32)  # 256 MB: one more copy of it would show in the peak
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from now
    before = _peak_rss_bytes()
    with open("/dev/null", "wb") as sink:
        write_initializer(sink, "big", array)
    assert _peak_rss_bytes() - before < array.nbytes / 4


def test_the_exported_graph_runs_as_the_module_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 4)).eval()
    tokens = torch.tensor([[1, 2, 3], [4, 5, 49]])
    export_appending_weights(module, (tokens,), tmp_path / "model.onnx", input_names=["tokens"],
                             output_names=["out"], dynamic_axes={"tokens": {0: "batch"}})
    model = onnx.load(str(tmp_path / "model.onnx"))
    assert {i.name for i in model.graph.input} == {"tokens"}
    assert len(model.graph.initializer) == 3
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"tokens": tokens.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, module(tokens).numpy(), rtol=1e-6, atol=1e-6)
