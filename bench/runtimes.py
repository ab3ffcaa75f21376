"""What serving on ONNX Runtime costs or gains: the bare model per runtime, and each service's start.

`model_img_s_by_runtime`: the index version's own graphs through ONNX Runtime (fp32, and int8 where
the version has one) against the fused torch fp32 graph the classifier served before, in one run.
`ready_s`: each service's process started alone (the gateway once the other two are up), timed to its
first 200 on `/readyz`, with the index present.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from bench.model import ModelFigures
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.vision.embedder import Embedder
from lookalike.vision.onnx_engine import OnnxEmbedder
from supervisor.loopback import free_port
from supervisor.stack import SERVICES, start, stop_all

Measure = Callable[[Embedder | OnnxEmbedder, list[np.ndarray]], ModelFigures]


def served_graphs(index: Path) -> dict[str, OnnxEmbedder]:
    """The serving version's fp32 graph and, where it has one, its int8 graph, as the classifier loads them."""
    version = IndexLayout(index).require_current()
    manifest = read_manifest(version)
    graphs = {}
    if manifest.network is not None:
        graphs["onnxruntime_fp32"] = OnnxEmbedder(version / manifest.network.file, manifest.model,
                                                  manifest.preprocessing, sha256=manifest.network.sha256)
    if manifest.int8 is not None:
        graphs["onnxruntime_int8"] = OnnxEmbedder(version / manifest.int8.file, manifest.model,
                                                  manifest.preprocessing, precision="int8",
                                                  sha256=manifest.int8.sha256)
    return graphs


def measure_runtimes(index: Path, weights: str, photos: list[np.ndarray], measure: Measure) -> dict[str, ModelFigures]:
    """ONNX Runtime fp32 and int8 against the fused torch fp32 graph, in this process.

    Each is measured twice, in the order A B C then C B A, keeping each batch size's better figure: on a
    shared machine the load drifts within a run, and one pass in a fixed order hands the drift to one side.
    """
    models: dict[str, Embedder | OnnxEmbedder] = {**served_graphs(index), "torch_fp32": Embedder(weights, "fp32")}
    best: dict[str, dict[int, float]] = {}
    for name in [*models, *reversed(models)]:
        for size, rate in measure(models[name], photos).img_s.items():
            best.setdefault(name, {})[size] = max(rate, best.get(name, {}).get(size, 0.0))
    return {name: ModelFigures(rates) for name, rates in best.items()}


def ready_seconds(env: dict[str, str], timeout_s: float = 120) -> dict[str, float]:
    """Process start to first 200 on /readyz, per service: classifier and similarity alone, then the gateway
    with both up (it is ready only when they are)."""
    ports = {service.name: free_port() for service in SERVICES}
    full_env = {**os.environ, **env, **{service.port_env: str(ports[service.name]) for service in SERVICES}}
    processes = {}
    seconds: dict[str, float] = {}
    try:
        for service in SERVICES:
            started = time.monotonic()
            processes[service.name] = process = start(service, full_env)
            url = f"http://127.0.0.1:{ports[service.name]}/readyz"
            while time.monotonic() - started < timeout_s and process.poll() is None:
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        seconds[service.name] = round(time.monotonic() - started, 2)
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
            else:
                raise RuntimeError(f"the {service.name} service was not ready within {timeout_s:.0f} s")
    finally:
        stop_all(processes)
    return seconds
