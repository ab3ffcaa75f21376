"""The index directory: the contract between the indexing job and the two services.

    <root>/current              -> versions/<version>   (a symlink, swapped by rename)
    <root>/versions/<version>/
        manifest.json           what was built, from what, with which model
        items.json              one CatalogItem per catalogue image; `label` is its Faiss id
        head.npz                the category head the classifier applies to embeddings
        indexes/<category>.faiss
        thumbnails/<label>.jpg  what the web page shows, so phones never load a 12 MP original

A version directory is written completely beside the serving one, then published by one
rename, so a reader sees the old version or the new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

from lookalike.contracts import ModelInfo
from lookalike.errors import ApiError, NotReady

MANIFEST = "manifest.json"
ITEMS = "items.json"
HEAD = "head.npz"
INDEXES = "indexes"
THUMBNAILS = "thumbnails"


class Preprocessing(BaseModel):
    """How a photo becomes the network's input; part of the model's identity."""

    resize: int = 232
    crop: int = 224
    mode: Literal["center-crop", "pad"] = Field(
        "center-crop", description="`center-crop`: shorter side to `resize`, then the centre `crop`×`crop`. "
        "`pad`: longer side to `crop`, the whole image kept, padded to a square with the mean colour.")
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class CategoryStats(BaseModel):
    name: str
    items: int
    index_type: str = Field("Flat", description="The Faiss index actually built: Flat where too few vectors train the asked type.")
    search_parameters: dict[str, int] = Field(default_factory=dict,
                                              description="Faiss search-time settings saved with it, e.g. IVF's nprobe.")


class HeadStats(BaseModel):
    cv_accuracy: float | None = Field(description="Held-out accuracy from k-fold cross-validation; None if too few images.")
    folds: int
    train_items: int


class Manifest(BaseModel):
    version: str
    created_at: datetime
    model: ModelInfo
    preprocessing: Preprocessing
    embedding_dim: int
    index_type: str = "Flat"
    categories: list[CategoryStats]
    head: HeadStats
    catalog: str = Field(description="The catalogue folder the index was built from.")

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]


class CatalogItem(BaseModel):
    label: int = Field(description="The item's id inside Faiss (int64).")
    id: str
    category: str
    name: str
    file: str = Field(description="Path relative to the catalogue folder.")
    extra: dict[str, str] = Field(default_factory=dict)
    sha256: str | None = Field(None, description="Hash of the image file's bytes; what the embedding cache is keyed by.")

    @property
    def thumbnail(self) -> str:
        return f"{THUMBNAILS}/{self.label}.jpg"


def new_version_name() -> str:
    """UTC build time to the microsecond, so names sort in build order even within one second."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


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


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


Served = TypeVar("Served", bound=Versioned)


class ServedVersion(Generic[Served]):
    """What a service loaded from the index's current version, swapped whole by `reload`.

    A request takes `require()` once and keeps that object, so a reload in the middle of it never
    mixes two versions; until a new version has loaded completely, the old one keeps serving.
    """

    def __init__(self, root: Path, load: Callable[[Path], Served], service: str) -> None:
        self.layout = IndexLayout(root)
        self._load = load
        self.service = service
        self.current: Served | None = None
        self.not_ready_reason: str | None = "the index has not been loaded yet"

    def reload(self) -> tuple[str, str | None]:
        """(new version, previous version); on failure the previous version, if any, keeps serving."""
        try:
            loaded = self._load(self.layout.require_current())
        except ApiError as exc:
            if self.current is None:
                self.not_ready_reason = exc.message
            raise
        previous = self.current.version if self.current is not None else None
        self.current, self.not_ready_reason = loaded, None
        return loaded.version, previous

    def require(self) -> Served:
        current = self.current
        if current is None:
            raise NotReady(f"The {self.service} service is not ready: {self.not_ready_reason}")
        return current
