"""Which ResNet50 weights to run: `imagenet`, `random`, a `.pth` file, or `auto`.

`random` exists so that tests and offline demos run where no weights can be downloaded. Its
results mean nothing, so it is always named in logs, responses and the web page.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from lookalike.errors import WeightsUnavailable

log = logging.getLogger("lookalike.weights")

RANDOM_SEED = 0
IMAGENET = ResNet50_Weights.IMAGENET1K_V2



@dataclass(frozen=True)
class ResolvedWeights:
    network: nn.Module
    label: str
    """`imagenet`, `random` or `file:<name>`, as shown to people."""
    identity: str
    """Changes whenever the embeddings would change."""


def load_resnet50(spec: str) -> ResolvedWeights:
    """Build ResNet50 with the weights that `spec` names."""
    if spec == "random":
        return _random()
    if spec == "imagenet":
        return _imagenet()
    if spec == "auto":
        try:
            return _imagenet()
        except WeightsUnavailable as exc:
            log.warning("%s", exc)
            log.warning(
                "!!! WEIGHTS=auto fell back to RANDOM weights: categories and similar items will be "
                "meaningless. Provide ImageNet weights for real results. !!!"
            )
            return _random()
    return _from_file(Path(spec))


def _random() -> ResolvedWeights:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        network = resnet50(weights=None)
    torch_version = torch.__version__.split("+")[0]
    return ResolvedWeights(network, "random", f"resnet50-random-seed{RANDOM_SEED}-torch{torch_version}")


def _imagenet() -> ResolvedWeights:
    try:
        state = IMAGENET.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise WeightsUnavailable(
            f"ImageNet weights ({IMAGENET}) could not be loaded: {exc}. Where there is no internet, put "
            f"{Path(IMAGENET.url).name} in $TORCH_HOME/hub/checkpoints/, or pass a .pth file as WEIGHTS."
        ) from exc
    network = resnet50(weights=None)
    network.load_state_dict(state)
    return ResolvedWeights(network, "imagenet", "resnet50-IMAGENET1K_V2")


def _from_file(path: Path) -> ResolvedWeights:
    if not path.is_file():
        raise WeightsUnavailable(
            f"WEIGHTS={path} is neither imagenet, random, auto nor an existing .pth file."
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise WeightsUnavailable(f"{path} is not a PyTorch state dict: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    network = resnet50(weights=None)
    # The ImageNet classifier layer (`fc`) is never used, so a trunk-only file is fine.
    missing, unexpected = network.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise WeightsUnavailable(
            f"{path} does not hold ResNet50 weights (missing {missing[:3]}, unexpected {unexpected[:3]})."
        )
    return ResolvedWeights(network, f"file:{path.name}", f"resnet50-file-{digest}")
