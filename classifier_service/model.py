"""The classifier's job: ResNet50 up to pool5, then the catalogue's category head.

One forward pass gives the 2048-d embedding (the 7×7 global average pool, L2-normalised);
the head turns that same embedding into category probabilities. ResNet50 never runs twice.
The network keeps its 1000-class ImageNet `fc` layer beside pool5, so the indexing job gets
each photo's ImageNet tags from the same pass.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from classifier_service.head import CategoryHead
from classifier_service.int8 import Int8Embedder, choose_precision, gate_summary
from classifier_service.weights import load_resnet50
from lookalike.contracts import ModelInfo
from lookalike.errors import IndexMismatch
from lookalike.index_layout import HEAD, read_manifest
from lookalike.manifest import Manifest, Preprocessing
from lookalike.served_version import ServedVersion

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


PRECISIONS = ("auto", "fp32", "bf16", "int8")


def resolve_precision(requested: str, device: torch.device) -> str:
    """What the torch model runs: `int8` is served by `classifier_service.int8`, and asks this for its fallback."""
    if requested in ("fp32", "bf16"):
        return requested
    if requested not in PRECISIONS:
        raise ValueError(f"PRECISION must be one of {', '.join(PRECISIONS)}, not {requested!r}")
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


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weights metadata: no download."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


class Pool5AndLogits(nn.Module):
    """ResNet50 answering (pool5, ImageNet logits) from one forward pass."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.fc = cast(nn.Module, resnet.fc)
        resnet.fc = nn.Identity()  # the body's output is now avgpool, flattened: pool5
        self.body = resnet

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.fc(features)


def preprocessing_digest(prep: Preprocessing) -> str:
    return hashlib.sha256(prep.model_dump_json().encode()).hexdigest()[:8]


class Embedder:
    """Images in, L2-normalised pool5 embeddings out.

    `fused` (the default) runs the network through oneDNN Graph on a CPU (see `fuse_for_cpu`);
    its embeddings match eager PyTorch's to within rounding, so an index serves either.
    PRECISION=int8 builds this at bf16 or fp32 as the fallback; the int8 model itself comes
    from the index version (`classifier_service.int8`).
    """

    def __init__(self, weights: str, precision: str = "auto", preprocessing: Preprocessing | None = None,
                 fused: bool = True) -> None:
        self.preprocessing = preprocessing or Preprocessing()
        self.weights_spec = weights
        self.requested_precision = precision
        resolved = load_resnet50(weights)
        network: nn.Module = Pool5AndLogits(resolved.network)
        self.device = resolve_device()
        self.precision = resolve_precision(precision, self.device)
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        network = network.eval().to(self.device, dtype=self.dtype).to(memory_format=torch.channels_last)
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
            self.embed_batch(list(blank[:first]))
            self.embed_batch(list(blank[:then]))

    def _input(self, images: np.ndarray) -> torch.Tensor:
        """(N, crop, crop, 3) uint8 to the network's normalised (N, 3, crop, crop) input, channels_last."""
        batch = torch.from_numpy(images).to(self.device)
        # NHWC memory seen as NCHW is exactly channels_last: no copy before the first conv.
        x = (batch.permute(0, 3, 1, 2).float() - self._mean) / self._std
        return x.to(self.dtype).contiguous(memory_format=torch.channels_last)

    def embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(crop, crop, 3) uint8 arrays to an (N, 2048) float32 array of unit vectors."""
        return self.embed_with_imagenet(images)[0]

    @torch.inference_mode()
    def embed_with_imagenet(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass: the (N, 2048) unit embeddings and the (N, 1000) ImageNet class probabilities."""
        features, logits = self.network(self._input(np.stack(images)))
        embeddings = nn.functional.normalize(features.float(), dim=1).cpu().numpy()
        return embeddings, torch.softmax(logits.float(), dim=1).cpu().numpy()

    @property
    def cache_key(self) -> str:
        """The embedding cache's key: bf16 and fp32 embeddings agree to within rounding, so they share one."""
        return self.info.model_id


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
