"""The classifier's job: ResNet50 up to pool5, then the catalogue's category head.

One forward pass gives the 2048-d embedding (the 7×7 global average pool, L2-normalised);
the head turns that same embedding into category probabilities. ResNet50 never runs twice.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from classifier_service.head import CategoryHead
from classifier_service.weights import load_resnet50
from lookalike.contracts import ModelInfo
from lookalike.errors import ApiError
from lookalike.index_layout import HEAD, Manifest, Preprocessing, ServedVersion, read_manifest

log = logging.getLogger("lookalike.classifier")

EMBEDDING_DIM = 2048


def resolve_device() -> torch.device:
    """CUDA when present, never required."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPUs where bf16 inference beats fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested in ("fp32", "bf16"):
        return requested
    if requested != "auto":
        raise ValueError(f"PRECISION must be auto, fp32 or bf16, not {requested!r}")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def fuse_for_cpu(network: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """The network as one frozen TorchScript graph, which oneDNN Graph runs as fused kernels.

    Each convolution takes its batch norm, ReLU and residual add into one kernel, with weights
    packed once rather than on every call: on 2 AVX-512 cores, bf16 at batch 1 drops from
    46 ms to 22 ms. TorchScript is deprecated upstream, but torch.compile measured slower here
    (25 against 43 img/s at batch 1) and compiles for half a minute per batch size.
    """
    torch.jit.enable_onednn_fusion(True)  # a process-wide switch; only frozen TorchScript graphs use it
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        return torch.jit.freeze(torch.jit.trace(network, example, check_trace=False))


def preprocessing_digest(prep: Preprocessing) -> str:
    return hashlib.sha256(prep.model_dump_json().encode()).hexdigest()[:8]


class Embedder:
    """Images in, L2-normalised pool5 embeddings out.

    `fused` (the default) runs the network through oneDNN Graph on a CPU (see `fuse_for_cpu`);
    its embeddings match eager PyTorch's to within rounding, so an index serves either.
    """

    def __init__(self, weights: str, precision: str = "auto", preprocessing: Preprocessing | None = None,
                 fused: bool = True) -> None:
        self.preprocessing = preprocessing or Preprocessing()
        resolved = load_resnet50(weights)
        network = resolved.network
        network.fc = nn.Identity()  # the output is now avgpool, flattened: pool5
        self.device = resolve_device()
        self.precision = resolve_precision(precision, self.device)
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        network = network.eval().to(self.device, dtype=self.dtype, memory_format=torch.channels_last)
        prep = self.preprocessing
        self._mean = torch.tensor(prep.mean, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(prep.std, device=self.device).view(1, 3, 1, 1) * 255
        # oneDNN Graph fuses on x86 CPUs, where it was measured; elsewhere the network runs eager.
        self.fused = fused and self.device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64")
        self.network: nn.Module | torch.jit.ScriptModule = network
        if self.fused:
            self.network = fuse_for_cpu(network, self._input(np.zeros((1, prep.crop, prep.crop, 3), np.uint8)))
        self.info = ModelInfo(
            weights=resolved.label,
            model_id=f"{resolved.identity}-{preprocessing_digest(prep)}",
            precision=self.precision,
        )
        if self.info.weights == "random":
            log.warning("!!! RANDOM WEIGHTS: this model recognises nothing; results are for testing only. !!!")
        log.info("model ready: weights=%s precision=%s device=%s graph=%s", self.info.weights, self.precision,
                 self.device, "onednn-fused" if self.fused else "eager")

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run every size after every other once, so serving compiles nothing new.

        A fused graph profiles and compiles each input shape on first sight (a few hundred ms),
        and again for each change from one shape to another, and keeps some state per thread:
        call this on the thread that will serve, and memory stays flat afterwards.
        """
        if not self.fused:
            return
        blank = np.zeros((max(batch_sizes), self.preprocessing.crop, self.preprocessing.crop, 3), np.uint8)
        for first, then in itertools.product(batch_sizes, repeat=2):
            self.embed_batch(blank[:first])
            self.embed_batch(blank[:then])

    def _input(self, images: np.ndarray) -> torch.Tensor:
        """(N, crop, crop, 3) uint8 to the network's normalised (N, 3, crop, crop) input, channels_last."""
        batch = torch.from_numpy(images).to(self.device)
        # NHWC memory seen as NCHW is exactly channels_last: no copy before the first conv.
        x = (batch.permute(0, 3, 1, 2).float() - self._mean) / self._std
        return x.to(self.dtype).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(crop, crop, 3) uint8 arrays to an (N, 2048) float32 array of unit vectors."""
        features = self.network(self._input(np.stack(images))).float()
        return nn.functional.normalize(features, dim=1).cpu().numpy()


class IndexMismatch(ApiError):
    status, code = 409, "index_model_mismatch"


@dataclass(frozen=True)
class LoadedHead:
    head: CategoryHead
    manifest: Manifest

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass(frozen=True)
class Classification:
    embedding: np.ndarray
    probabilities: dict[str, float]
    index_version: str

    @property
    def category(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


class Classifier:
    """The embedder plus the head of the serving index version, swappable by `reload`."""

    def __init__(self, embedder: Embedder, index_root: Path) -> None:
        self.embedder = embedder
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
        log.info("classifier loaded index %s (categories: %s)", manifest.version, ", ".join(manifest.category_names))
        return LoadedHead(CategoryHead.load(version_dir / HEAD), manifest)

    def classify_batch(self, images: Sequence[np.ndarray]) -> list[Classification]:
        loaded = self.served.require()  # one snapshot for the whole batch, whatever reload does meanwhile
        embeddings = self.embedder.embed_batch(images)
        probabilities = loaded.head.predict_proba(embeddings)
        names = loaded.head.categories
        return [
            Classification(e, {n: float(p) for n, p in zip(names, row)}, loaded.manifest.version)
            for e, row in zip(embeddings, probabilities)
        ]
