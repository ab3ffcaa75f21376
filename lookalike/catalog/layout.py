"""The index directory: the contract between the indexing job and the two services.

    <root>/current              -> versions/<version>   (a symlink, swapped by rename)
    <root>/versions/<version>/
        manifest.json           what was built, from what, with which model
        items.json              one CatalogItem per catalogue image; `label` is its Faiss id
        head.npz                the category head the classifier applies to embeddings
        indexes/<category>.faiss
        thumbnails/<label>.jpg  what the web page shows, so phones never load a 12 MP original
        text.sqlite             the words index (SQLite FTS5): names, categories, text columns, ImageNet tags
        text_vectors.npy        each item's words as a sentence model's vector, row = label (absent with TEXT_MODEL=none)
        synonyms.txt            the store's synonyms, copied from beside products.csv (absent: the default list)
    <root>/text-models/<digest>/  the sentence model's ONNX copy (model.onnx, tokenizer.json, text_model.json), named
                                  by its content's digest: shared by the versions whose manifests name it

A version directory is written completely beside the serving one, then published by one
rename, so a reader sees the old version or the new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from lookalike.catalog.manifest import THUMBNAILS, CatalogItem, Manifest
from lookalike.errors import NotReady

MANIFEST = "manifest.json"
ITEMS = "items.json"
HEAD = "head.npz"
INDEXES = "indexes"
TEXT_INDEX = "text.sqlite"
SYNONYMS = "synonyms.txt"
TEXT_VECTORS = "text_vectors.npy"
TEXT_MODELS = "text-models"
INT8_MODEL = "model-int8.onnx"
"""The quantised ResNet50 (PRECISION=int8), when the indexing job made one; its sha256 is in the manifest."""
FP32_MODEL = "model-fp32.onnx"
"""The exported fp32 network with the category head appended, which the classifier serves; its sha256 is in the
manifest."""
__all__ = ["FP32_MODEL", "HEAD", "INDEXES", "INT8_MODEL", "ITEMS", "MANIFEST", "SYNONYMS", "TEXT_INDEX", "TEXT_MODELS",
           "TEXT_VECTORS", "THUMBNAILS", "IndexLayout", "index_file", "new_version_name", "read_items", "read_manifest"]


def new_version_name() -> str:
    """UTC build time to the microsecond, so names sort in build order even within one second."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


def index_file(version_dir: Path, category: str) -> Path:
    return version_dir / INDEXES / f"{category}.faiss"


def read_manifest(version_dir: Path) -> Manifest:
    return Manifest.model_validate_json((version_dir / MANIFEST).read_text())


def read_items(version_dir: Path) -> list[CatalogItem]:
    return [CatalogItem.model_validate(row) for row in json.loads((version_dir / ITEMS).read_text())]


class IndexLayout:
    """Versioned index directories under one root, with an atomically swapped `current` pointer."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.pointer = self.root / "current"

    def current(self) -> Path | None:
        """The serving version's directory, resolved once so a reader stays on one version."""
        if not self.pointer.is_symlink() and not self.pointer.exists():
            return None
        target = self.pointer.resolve()
        return target if (target / MANIFEST).is_file() else None

    def require_current(self) -> Path:
        """The serving version's directory, or NotReady saying how to build one."""
        version_dir = self.current()
        if version_dir is None:
            raise NotReady("There is no index yet. Build one with `make index`.")
        return version_dir

    def begin_build(self) -> Path:
        """A fresh hidden directory to build a version in; invisible to readers until published."""
        self.versions.mkdir(parents=True, exist_ok=True)
        build = self.versions / f".build-{secrets.token_hex(4)}"
        build.mkdir()
        return build

    def publish(self, build_dir: Path, version: str) -> Path:
        """Rename the finished build into place, then swap `current` to it in one rename."""
        final = self.versions / version
        os.replace(build_dir, final)
        self.point_to(version)
        return final

    def point_to(self, version: str) -> Path:
        """Swap `current` to an already published version in one rename (publish and rollback)."""
        target = self.versions / version
        if not (target / MANIFEST).is_file():
            raise FileNotFoundError(f"{target} is not a published index version")
        tmp_link = self.root / f".current-{secrets.token_hex(4)}"
        tmp_link.symlink_to(Path("versions") / version)
        os.replace(tmp_link, self.pointer)
        _fsync_dir(self.root)
        return target

    def published(self) -> list[str]:
        """Published version names, oldest first (names start with their UTC build time)."""
        if not self.versions.is_dir():
            return []
        return sorted(p.name for p in self.versions.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
