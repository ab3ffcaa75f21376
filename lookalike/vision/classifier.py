"""The classifier service's core: the embedder plus the serving index version's category head.

A photo's embedding and its category probabilities come from one forward pass; `reload`
swaps in a new version's head (and its int8 model, where the precision rule says so) whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.catalog.layout import HEAD, read_manifest
from lookalike.catalog.manifest import Manifest
from lookalike.contracts import ModelInfo
from lookalike.errors import IndexMismatch
from lookalike.served_version import ServedVersion
from lookalike.vision.embedder import Embedder
from lookalike.vision.head import CategoryHead
from lookalike.vision.int8_engine import Int8Embedder
from lookalike.vision.precision import choose_precision, gate_summary

log = logging.getLogger("lookalike.classifier")


@dataclass(frozen=True)
class LoadedHead:
    """One index version as the classifier serves it: its head, and the model that embeds for it."""

    head: CategoryHead
    manifest: Manifest
    embedder: Embedder | Int8Embedder
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


class Classifier:
    """The embedder plus the head of the serving index version, swappable by `reload`."""

    def __init__(self, embedder: Embedder, index_root: Path, *, threads: int = 0,
                 warm_up_sizes: Sequence[int] = (1,)) -> None:
        self.embedder = embedder
        self.threads = threads
        self.warm_up_sizes = warm_up_sizes
        self.served: ServedVersion[LoadedHead] = ServedVersion(index_root, self._load_head, "classifier")

    @property
    def loaded(self) -> LoadedHead | None:
        return self.served.current

    @property
    def not_ready_reason(self) -> str | None:
        return self.served.not_ready_reason

    def reload(self) -> tuple[str, str | None]:
        """Load the head of the current index version; the old one serves until the swap."""
        return self.served.reload()

    def _load_head(self, version_dir: Path) -> LoadedHead:
        manifest = read_manifest(version_dir)
        if manifest.model.model_id != self.embedder.info.model_id:
            raise IndexMismatch(
                f"The index was built with {manifest.model.weights} weights ({manifest.model.model_id}), "
                f"but this classifier runs {self.embedder.info.weights} ({self.embedder.info.model_id}). "
                "Re-index with the same WEIGHTS."
            )
        embedder, reason, warnings = self._embedder_for(version_dir, manifest)
        for warning in warnings:
            log.warning("%s", warning)
        log.info("classifier loaded index %s at %s (%s; categories: %s)", manifest.version, embedder.precision,
                 reason, ", ".join(manifest.category_names))
        return LoadedHead(CategoryHead.load(version_dir / HEAD), manifest, embedder, reason, tuple(warnings))

    def _embedder_for(self, version_dir: Path, manifest: Manifest) -> tuple[Embedder | Int8Embedder, str, list[str]]:
        """The version's own int8 model where the precision rule says so (see `choose_precision`), else the torch one."""
        torch_model = self.embedder
        gate = manifest.int8.gate if manifest.int8 else None
        precision, reason, warnings = choose_precision(torch_model.requested_precision, torch_model.info.weights,
                                                       torch_model.device, torch_model.precision, gate)
        if manifest.int8 is not None and "int8" in (manifest.model.precision, precision) \
                and manifest.model.precision != precision:
            warnings.append(f"the catalogue was embedded at {manifest.model.precision}, queries at {precision}: "
                            f"they agree only within the int8 gate's figures ({gate_summary(manifest.int8.gate)})")
        if precision != "int8" or manifest.int8 is None:
            return torch_model, reason, warnings
        int8 = Int8Embedder(version_dir / manifest.int8.file, torch_model.info, torch_model.preprocessing,
                            sha256=manifest.int8.sha256, threads=self.threads)
        int8.warm_up(self.warm_up_sizes)
        return int8, reason, warnings

    def classify_batch(self, images: Sequence[np.ndarray]) -> list[Classification]:
        loaded = self.served.require()  # one snapshot for the whole batch, whatever reload does meanwhile
        embeddings = loaded.embedder.embed_batch(images)
        probabilities = loaded.head.predict_proba(embeddings)
        names = loaded.head.categories
        return [
            Classification(e, {n: float(p) for n, p in zip(names, row)}, loaded.manifest.version, loaded.embedder.info)
            for e, row in zip(embeddings, probabilities)
        ]
