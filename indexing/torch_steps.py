"""The job's torch steps, each in a process of its own that ends with the step.

A store re-indexes while its services serve, so the job's memory counts beside theirs. Importing torch
and torchvision (PyPI's CUDA build) holds about 520 MB before any work, and a process never gives that
back; exporting the sentence model adds transformers. So `python -m indexing` runs the two exports,
the only steps that need torch, in a spawned child that exits when its file is written: the job's own
process imports no torch, embeds through ONNX Runtime and fits the head with scikit-learn.

A caller that already holds torch (a test, the evaluation) runs them in its own process instead:
`in_child=False`, the default of `build_index`, costs no second start.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from indexing.imagenet_tags import writes_tags
from lookalike.catalog.manifest import Preprocessing
from lookalike.contracts import ModelInfo, PrecisionSetting
from lookalike.errors import TorchStepDied
from lookalike.log_lines import configure_logging

if TYPE_CHECKING:
    from lookalike.vision.embedder import Embedder

log = logging.getLogger("lookalike.indexing")

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class SourceModel:
    """What the job keeps of the torch model once its network is exported: who it is and how it sees."""

    info: ModelInfo
    preprocessing: Preprocessing
    requested_precision: PrecisionSetting
    imagenet_classes: tuple[str, ...] | None
    """The 1000 ImageNet class names where the weights know them (the tags), else None."""
    exporter: str
    """What exported the network, for the manifest."""

    @classmethod
    def exported(cls, info: ModelInfo, preprocessing: Preprocessing, requested: PrecisionSetting) -> SourceModel:
        """The model just exported (torch is loaded): its class names and the exporter read here, once."""
        from lookalike.vision.network import imagenet_classes
        from lookalike.vision.onnx_export import EXPORTER

        classes = tuple(imagenet_classes()) if writes_tags(info.weights) else None
        return cls(info, preprocessing, requested, classes, EXPORTER)


def run_step(in_child: bool, step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`step(*args, **kwargs)`, in a spawned process that ends with it where `in_child`; its error is raised here."""
    if not in_child:
        return step(*args, **kwargs)
    # spawn, not fork: a forked child would start with the parent's memory, and with threads it may not own.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=configure_logging) as pool:
        try:
            return pool.submit(step, *args, **kwargs).result()
        except BrokenProcessPool as exc:
            raise TorchStepDied(f"The process running {step.__name__} ended without finishing (killed, or out of "
                                "memory?); nothing was published. Run the job again.") from exc


def export_source_network(weights: str, precision: PrecisionSetting, path: Path) -> SourceModel:
    """Load the weights in torch at fp32 and export the network to `path` (see `lookalike.vision.onnx_export`):
    the eager network alone, without `Embedder`'s channels-last copy and fused graph, which the job never runs."""
    from lookalike.vision.embedder import model_info
    from lookalike.vision.network import Pool5AndLogits
    from lookalike.vision.onnx_export import export_pool5_and_logits
    from lookalike.vision.weights import load_resnet50

    resolved = load_resnet50(weights)
    if resolved.label == "random":
        log.warning("!!! RANDOM WEIGHTS: this model recognises nothing; results are for testing only. !!!")
    prep = Preprocessing()
    export_pool5_and_logits(Pool5AndLogits(resolved.network).eval(), prep.crop, path)
    return SourceModel.exported(model_info(resolved, prep, "fp32"), prep, precision)


def export_given_network(embedder: Embedder, path: Path) -> SourceModel:
    """The same, for a torch model the caller already holds (`BuildPlan.embedder`); its network is kept."""
    from lookalike.vision.onnx_export import export_network

    export_network(embedder, path)
    return SourceModel.exported(embedder.info, embedder.preprocessing, embedder.requested_precision)
