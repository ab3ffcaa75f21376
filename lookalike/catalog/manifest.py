"""What an index version says about itself: how it was built, and what each item is.

These schemas are the contents of `manifest.json` and `items.json` (see `lookalike.catalog.layout`);
the indexing job writes them and both services read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from lookalike.catalog.vector_store import VectorStoreRecord
from lookalike.contracts import GateFigures, ModelInfo

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
    index_type: str = Field("Flat", description="The Faiss index actually built: "
                            "Flat where too few vectors train the asked type.")
    search_parameters: dict[str, int] = Field(default_factory=dict,
                                              description="Faiss search-time settings saved with it, e.g. IVF's nprobe.")


class HeadStats(BaseModel):
    cv_accuracy: float | None = Field(description="Held-out accuracy from k-fold cross-validation; None if too few images.")
    folds: int
    train_items: int


class Int8Model(BaseModel):
    """The quantised ResNet50 saved in this version (see `lookalike.vision.int8_engine`)."""

    file: str
    sha256: str
    engine: str = Field(description="What quantised it and runs it, with its version.")
    calibration_images: dict[str, int] = Field(description="Catalogue photos the ranges were calibrated on, by category.")
    gate: GateFigures


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
    requested_precision: str = Field("", description="PRECISION as the job was asked: auto, fp32, bf16 or int8.")
    precision_reason: str = Field("", description="Why the catalogue was embedded at `model.precision`.")
    int8: Int8Model | None = None
    vector_store: VectorStoreRecord | None = Field(
        None, description="Where the vectors are; absent in versions written before Milvus, which are Faiss.")
    compatibility: str = Field(
        "", description="Queries served at another precision than the catalogue's agree with it only within the "
        "int8 gate's measured figures (cosine, top-10 overlap, head agreement).")

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]


class CatalogItem(BaseModel):
    """One photo. Photos sharing `id` are one product; products sharing `group_id` are its variants."""

    label: int = Field(description="The photo's id inside Faiss (int64).")
    id: str = Field(description="The product's id: several photos may share it.")
    category: str
    name: str
    file: str = Field(description="Path relative to the catalogue folder.")
    extra: dict[str, str] = Field(default_factory=dict)
    sha256: str | None = Field(None, description="Hash of the image file's bytes; what the embedding cache is keyed by.")
    group_id: str | None = Field(None, description="products.csv `item_group_id`: the product's variants share it.")

    @property
    def group(self) -> str:
        """What results are deduplicated by: the variant group, else the product."""
        return self.group_id or self.id

    @property
    def thumbnail(self) -> str:
        return f"{THUMBNAILS}/{self.label}.jpg"
