"""The classifier service's core: the serving index version's own ONNX graph, run by ONNX Runtime.

A photo's embedding and its category logits come from one pass of the version's graph (the network
with the category head appended, fp32 or int8 by the precision rule); `reload` swaps in a new
version's graph whole. No torch: the version's files are all the classifier needs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.catalog.layout import HEAD, read_manifest
from lookalike.catalog.manifest import Manifest, Preprocessing
from lookalike.contracts import ModelInfo, PrecisionSetting
from lookalike.errors import IndexMismatch, NetworkModelInvalid
from lookalike.served_version import ServedVersion
from lookalike.vision.head import CategoryHead
from lookalike.vision.onnx_engine import OnnxEmbedder, file_sha256, runtime_device, served_memory, softmax
from lookalike.vision.precision import choose_precision, gate_summary

log = logging.getLogger("lookalike.classifier")


@dataclass(frozen=True)
class LoadedHead:
    """One index version as the classifier serves it: its head, and the graph that embeds and classifies for it."""

    head: CategoryHead
    manifest: Manifest
    embedder: OnnxEmbedder
    precision_reason: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass(frozen=True)
class Classification:
    embedding: np.ndarray
    probabilities: dict[str, float]
    index_version: str
    model: ModelInfo

    @property
    def category(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


def weights_mismatch(spec: str, model: ModelInfo) -> str | None:
    """Why an index built with `model` is not one WEIGHTS=`spec` serves, or None. `auto` serves either."""
    if spec == "auto":
        return None
    if spec in ("imagenet", "random"):
        same = model.weights == spec
    else:
        path = Path(spec)
        same = model.weights == f"file:{path.name}" and path.is_file() \
            and model.model_id.startswith(f"resnet50-file-{file_sha256(path)[:12]}-")
    if same:
        return None
    return (f"The index was built with {model.weights} weights ({model.model_id}), but this classifier was started "
            f"with WEIGHTS={spec}. Re-index with the same WEIGHTS.")


class Classifier:
    """The graph and head of the serving index version, swappable by `reload`."""

    def __init__(self, index_root: Path, *, weights: str = "auto", precision: PrecisionSetting = "auto",
                 threads: int = 0, warm_up_sizes: Sequence[int] = (1,), memory_arena: bool | None = None,
                 use_cuda: bool = True) -> None:
        self.weights = weights
        self.requested_precision = precision
        self.threads = threads
        self.warm_up_sizes = warm_up_sizes
        self.memory_arena = memory_arena
        self.use_cuda = use_cuda
        self.device = runtime_device() if use_cuda else "cpu"
        self.served: ServedVersion[LoadedHead] = ServedVersion(index_root, self._load_head, "classifier")

    @property
    def loaded(self) -> LoadedHead | None:
        return self.served.current

    @property
    def not_ready_reason(self) -> str | None:
        return self.served.not_ready_reason

    @property
    def preprocessing(self) -> Preprocessing:
        """How an upload becomes the serving version's input (the default until a version is loaded)."""
        loaded = self.loaded
        return loaded.manifest.preprocessing if loaded else Preprocessing()

    def reload(self) -> tuple[str, str | None]:
        """Load the current index version; the old one serves until the swap."""
        return self.served.reload()

    def _load_head(self, version_dir: Path) -> LoadedHead:
        manifest = read_manifest(version_dir)
        if (mismatch := weights_mismatch(self.weights, manifest.model)) is not None:
            raise IndexMismatch(mismatch)
        if manifest.network is None:
            raise NetworkModelInvalid(
                f"Index version {manifest.version} was built before the classifier served through ONNX Runtime: it "
                "holds no fp32 network (model-fp32.onnx), and serving it with another model's vectors would give "
                "wrong results. Re-index (`make index`; `make run` rebuilds it by itself).")
        embedder, reason, warnings = self._embedder_for(version_dir, manifest)
        for warning in warnings:
            log.warning("%s", warning)
        if manifest.model.weights == "random":
            log.warning("!!! RANDOM WEIGHTS: this model recognises nothing; results are for testing only. !!!")
        log.info("classifier loaded index %s at %s on %s (%s; categories: %s)", manifest.version, embedder.precision,
                 embedder.device, reason, ", ".join(manifest.category_names))
        return LoadedHead(CategoryHead.load(version_dir / HEAD), manifest, embedder, reason, tuple(warnings))

    def _embedder_for(self, version_dir: Path, manifest: Manifest) -> tuple[OnnxEmbedder, str, list[str]]:
        """The version's int8 graph where the precision rule says so (see `choose_precision`), else its fp32 one."""
        assert manifest.network is not None
        gate = manifest.int8.gate if manifest.int8 else None
        precision, reason, warnings = choose_precision(self.requested_precision, manifest.model.weights, self.device,
                                                       gate)
        if manifest.int8 is not None and "int8" in (manifest.model.precision, precision) \
                and manifest.model.precision != precision:
            warnings.append(f"the catalogue was embedded at {manifest.model.precision}, queries at {precision}: "
                            f"they agree only within the int8 gate's figures ({gate_summary(manifest.int8.gate)})")
        file = manifest.int8 if precision == "int8" and manifest.int8 is not None else manifest.network
        memory = served_memory(precision, self.memory_arena)
        embedder = OnnxEmbedder(version_dir / file.file, manifest.model, manifest.preprocessing, precision=precision,
                                sha256=file.sha256, threads=self.threads, memory=memory, use_cuda=self.use_cuda)
        # With memory patterns on, ONNX Runtime plans each input shape on first sight: warm every size up.
        # Off, one small pass readies its threads and kernels, and the start stays short.
        embedder.warm_up(self.warm_up_sizes if memory.mem_pattern else self.warm_up_sizes[:1])
        return embedder, reason, warnings

    def classify_batch(self, images: Sequence[np.ndarray]) -> list[Classification]:
        loaded = self.served.require()  # one snapshot for the whole batch, whatever reload does meanwhile
        embeddings, category_logits = loaded.embedder.embed_with_categories(images)
        probabilities = softmax(category_logits)
        names = loaded.head.categories
        return [
            Classification(e, {n: float(p) for n, p in zip(names, row)}, loaded.manifest.version, loaded.embedder.info)
            for e, row in zip(embeddings, probabilities)
        ]
