"""What an index version says about itself: how it was built, and what each item is.

These schemas are the contents of `manifest.json` and `items.json` (see `lookalike.catalog.layout`);
the indexing job writes them and both services read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from lookalike.catalog.vector_store import VectorStoreRecord
from lookalike.contracts import GateFigures, ModelInfo, PrecisionSetting, TextModelInfo

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


class NetworkModel(BaseModel):
    """The fp32 network saved in this version, the category head appended (see `lookalike.vision.onnx_engine`):
    what the classifier serves through ONNX Runtime unless the precision rule picks `int8`."""

    file: str
    sha256: str
    exporter: str = Field(description="What exported it, with its version.")


class Int8Model(BaseModel):
    """The quantised ResNet50 saved in this version (see `lookalike.vision.int8_engine`)."""

    file: str
    sha256: str
    engine: str = Field(description="What quantised it and runs it, with its version.")
    calibration_images: dict[str, int] = Field(description="Catalogue photos the ranges were calibrated on, by category.")
    gate: GateFigures


class ProjectionInfo(BaseModel):
    """The dimension reduction the version's vectors were made with (see `lookalike.catalog.projection`)."""

    reduce: str = Field(description="REDUCE as the job was asked: pca:D or pca-whiten:D.")
    file: str
    sha256: str = Field(description="The projection file's digest; a service refuses a file that differs.")
    input_dim: int = Field(description="The model's embedding size: what queries arrive with.")
    dim: int = Field(description="What the indexes hold: D-dimensional unit vectors, 4·D bytes a photo (Flat).")
    learned_on: int = Field(description="Catalogue vectors the projection was learned from.")


class RecallFigures(BaseModel):
    """Leave-one-out recall of one category, or of the whole catalogue; figures only on enough queries."""

    queries: int = Field(description="Photos judged: those whose product or variant group has another photo "
                         "in the same category.")
    found_at_1: int
    found_at_10: int
    recall_at_1: float | None = Field(None, description="None: fewer queries than `min_queries`, not enough to judge.")
    recall_at_10: float | None = None


class SelfEval(BaseModel):
    """How well the version finds a product's other photos from one of them: the catalogue labels itself.

    For each photo of a product or variant group with at least two photos in its category, its
    nearest neighbours in the version's own index (itself left out, after any reduction): is
    another photo of the same product or group first (recall@1), or in the first 10 (recall@10)?
    """

    overall: RecallFigures
    per_category: dict[str, RecallFigures] = Field(default_factory=dict)
    min_queries: int = Field(20, description="Fewer judged queries than this give no figure: not enough to judge.")
    weights: str = Field(description="The weights the vectors came from; with `random` the figures test the "
                         "harness, not the model.")
    reduce: str = "none"
    sampled: bool = Field(False, description="True when a seeded sample of the photos was judged (large catalogues).")


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
    requested_precision: PrecisionSetting | Literal[""] = Field(
        "", description="PRECISION as the job was asked: auto, fp32, bf16 or int8.")
    precision_reason: str = Field("", description="Why the catalogue was embedded at `model.precision`.")
    int8: Int8Model | None = None
    network: NetworkModel | None = Field(
        None, description="The fp32 ONNX network, category head included, that the classifier serves; absent in "
        "versions built before the classifier served through ONNX Runtime, which it refuses (re-index).")
    text_model: TextModelInfo | None = Field(None, description="The sentence model that embedded the items' words "
                                             "(text_vectors.npy); None: built for bm25 alone (TEXT_MODEL=none).")
    vector_store: VectorStoreRecord | None = Field(
        None, description="Where the vectors are; absent in versions written before Milvus, which are Faiss.")
    compatibility: str = Field(
        "", description="Queries served at another precision than the catalogue's agree with it only within the "
        "int8 gate's measured figures (cosine, top-10 overlap, head agreement).")

    projection: ProjectionInfo | None = Field(None, description="The dimension reduction; None: REDUCE=none.")
    self_eval: SelfEval | None = Field(None, description="Leave-one-out recall on the catalogue's own products, "
                                       "measured by the indexing job before it published the version.")

    @property
    def index_dim(self) -> int:
        """What the Faiss indexes hold: the reduced dimension, else the embedding's."""
        return self.projection.dim if self.projection is not None else self.embedding_dim

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
