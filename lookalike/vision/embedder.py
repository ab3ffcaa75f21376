"""Photos in, L2-normalised 2048-d pool5 embeddings out: the torch model, fused for the CPU.

Only jobs use it: the indexing job loads the weights through it and exports its eager network to
ONNX (`onnx_export`), and the evaluation and the benchmark compare against it. The services run the
exported file through ONNX Runtime (`onnx_engine`) and never import this module.

One forward pass gives the embedding (the 7×7 global average pool, L2-normalised) and the
ImageNet class probabilities; the category head (`head.py`) turns that same embedding into
category probabilities, so ResNet50 never runs twice for one photo.
"""

from __future__ import annotations

import itertools
import logging
import platform
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lookalike.catalog.manifest import Preprocessing
from lookalike.contracts import PRECISION_SETTINGS, ModelInfo, Precision, PrecisionSetting
from lookalike.vision.network import Pool5AndLogits, fuse_for_cpu, preprocessing_digest, resolve_device
from lookalike.vision.precision import TorchPrecision, cpu_has_fast_bf16
from lookalike.vision.weights import ResolvedWeights, load_resnet50

log = logging.getLogger("lookalike.embedder")


def resolve_precision(requested: PrecisionSetting, device: torch.device) -> TorchPrecision:
    """What the torch model runs: bf16 where the CPU (AVX-512 BF16, AMX) or GPU is fast at it under `auto`."""
    if requested in ("fp32", "bf16"):
        return requested
    if requested not in PRECISION_SETTINGS:
        raise ValueError(f"PRECISION must be one of {', '.join(PRECISION_SETTINGS)}, not {requested!r}")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def model_info(resolved: ResolvedWeights, prep: Preprocessing, precision: Precision) -> ModelInfo:
    """Who the model is: its weights and how it sees (the preprocessing), which together decide its vectors."""
    return ModelInfo(weights=resolved.label, model_id=f"{resolved.identity}-{preprocessing_digest(prep)}",
                     precision=precision)


class Embedder:
    """Images in, L2-normalised pool5 embeddings out.

    `fused` (the default) runs the network through oneDNN Graph on a CPU (see `fuse_for_cpu`);
    its embeddings match eager PyTorch's to within rounding, so an index serves either.
    PRECISION=int8 builds this at bf16 or fp32 as the fallback; the int8 model itself comes
    from the index version (`lookalike.vision.int8_engine`).
    """

    def __init__(self, weights: str, precision: PrecisionSetting = "auto", preprocessing: Preprocessing | None = None,
                 fused: bool = True, torch_precision: TorchPrecision | None = None) -> None:
        """`torch_precision` overrides what the torch model runs (the indexing job exports fp32 whatever
        PRECISION asks; `requested_precision` keeps what was asked, for the precision rule)."""
        self.preprocessing = preprocessing or Preprocessing()
        self.weights_spec = weights
        self.requested_precision = precision
        resolved = load_resnet50(weights)
        network: nn.Module = Pool5AndLogits(resolved.network)
        self.device = resolve_device()
        self.precision = torch_precision or resolve_precision(precision, self.device)
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        network = network.eval().to(self.device, dtype=self.dtype).to(memory_format=torch.channels_last)
        prep = self.preprocessing
        self._mean = torch.tensor(prep.mean, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(prep.std, device=self.device).view(1, 3, 1, 1) * 255
        # oneDNN Graph fuses on x86 CPUs, where it was measured; elsewhere the network runs eager.
        self.fused = fused and self.device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64")
        self.eager = network
        """The eager network, on its device at its precision: what `onnx_export` exports when it is fp32 on a CPU."""
        self.network: nn.Module | torch.jit.ScriptModule = network
        if self.fused:
            self.network = fuse_for_cpu(network, self._input(np.zeros((1, prep.crop, prep.crop, 3), np.uint8)))
        self.info = model_info(resolved, prep, self.precision)
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


