"""What crosses the wire between the services, defined once and imported by both ends.

An embedding travels as base64 of little-endian float32: a 2048-d vector is 10.9 kB of JSON
instead of about 40 kB as a list of decimal numbers, and it decodes without loss.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, Field, field_validator

from lookalike.errors import BadBox

EMBEDDING_DIM = 2048
"""ResNet50's pool5: the embedding's size before any REDUCE."""
EMBEDDING_DTYPE = np.dtype("<f4")
MAX_K = 100
MAX_EXAMPLES = 20
"""Most products a search may name as liked, and as unliked, to refine it."""

Precision = Literal["fp32", "bf16", "int8"]
"""What a network runs at: torch at fp32 or bf16, or the index version's quantised ONNX model at int8."""
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

PrecisionSetting = Literal["auto", "fp32", "bf16", "int8"]
"""PRECISION as asked: a precision, or `auto`, which the machine and the int8 gate decide
(`lookalike.vision.precision.choose_precision`)."""
PRECISION_SETTINGS: tuple[PrecisionSetting, ...] = get_args(PrecisionSetting)


def encode_embedding(vector: np.ndarray) -> str:
    """One vector to its wire form."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype=EMBEDDING_DTYPE).tobytes()).decode("ascii")


def decode_embedding(text: str) -> np.ndarray:
    """The wire form back to a float32 vector; ValueError when it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("embedding is not valid base64") from exc
    if not raw or len(raw) % EMBEDDING_DTYPE.itemsize:
        raise ValueError("embedding is not a whole number of float32 values")
    vector = np.frombuffer(raw, dtype=EMBEDDING_DTYPE).astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise ValueError("embedding holds NaN or infinite values")
    return vector


class ModelInfo(BaseModel):
    """Which network made an embedding. Embeddings are comparable only when `model_id` matches."""

    weights: str = Field(description="`imagenet`, `random` or `file:<name>`. `random` results mean nothing.")
    model_id: str = Field(description="Identity of the weights and preprocessing; an index serves only this model.")
    precision: Precision = "fp32"


class TextModelInfo(BaseModel):
    """Which sentence model turned the catalogue's words into vectors; a query is comparable only with the same digest."""

    name: str = Field(description="What TEXT_MODEL named: a model hub name or a local directory.")
    digest: str = Field(description="sha256 of the model's weights, tokenizer and configuration files.")
    dim: int = Field(description="Length of its vectors.")
    onnx_digest: str | None = Field(None, description="The content digest of the model's ONNX copy that embeds the "
                                    "words, `<index>/text-models/<it>/`; None in a version built before there was one.")


class Box(BaseModel):
    """A region of the upright photo (after EXIF rotation), as fractions 0..1 of its width and height.

    Fractions, not pixels: the page downscales a photo before it uploads it, and a box must survive that.
    """

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def parse(cls, text: str) -> Box:
        """`x0,y0,x1,y1` to a Box; BadBox says what is wrong with it."""
        parts = text.split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(parts) != 4 or len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise BadBox(f"box={text!r} is not four numbers x0,y0,x1,y1, e.g. box=0.25,0.1,0.75,0.9.")
        x0, y0, x1, y1 = values
        if not all(0 <= v <= 1 for v in values):
            raise BadBox(f"box={text!r}: each value is a fraction of the photo's width or height, from 0 to 1.")
        if x0 >= x1 or y0 >= y1:
            raise BadBox(f"box={text!r} is inverted or empty: x0 must be below x1 and y0 below y1.")
        return cls(x0=x0, y0=y0, x1=x1, y1=y1)

    def __str__(self) -> str:
        return ",".join(repr(v) for v in (self.x0, self.y0, self.x1, self.y1))

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels of a `width`×`height` image, for `Image.crop`."""
        return (round(self.x0 * width), round(self.y0 * height), round(self.x1 * width), round(self.y1 * height))


class GateFigures(BaseModel):
    """How closely the int8 model follows fp32 on a held-out sample of the catalogue, and the verdict.

    With `random` weights every embedding lies within cos 0.998 of every other, so these figures
    say almost nothing there: the thresholds are meant for real weights.
    """

    images: int = Field(description="Held-out catalogue photos embedded at fp32 and at int8.")
    mean_cosine: float
    min_cosine: float
    top10_overlap: float = Field(description="Mean share of each photo's 10 nearest (within its category) "
                                 "that int8 and fp32 agree on.")
    head_agreement: float = Field(description="Share of photos for which the category head decides the same.")
    thresholds: dict[str, float]
    passed: bool
    failures: list[str] = Field(default_factory=list, description="Each figure below its threshold, in words.")
    int8_kernels: str = Field("", description="The int8 instructions of the CPU the gate ran on, e.g. AVX-512 VNNI.")


class ClassifyResponse(BaseModel):
    """The classifier's answer for one image: one forward pass, both outputs."""

    category: str
    confidence: float
    probabilities: dict[str, float]
    embedding: str = Field(description="L2-normalised pool5 embedding, base64 little-endian float32.")
    model: ModelInfo
    index_version: str
    timings_ms: dict[str, float]


class SearchRequest(BaseModel):
    """Nearest catalogue items to an embedding, within one category."""

    embedding: str
    category: str
    k: int = Field(10, ge=1, le=MAX_K, description="Products (one per variant group), not photos.")
    exclude_ids: list[str] = Field(default_factory=list, description="Products to leave out, by id.")
    exclude_groups: list[str] = Field(default_factory=list, description="Variant groups to leave out, e.g. the "
                                      "query product's own (more like this).")
    where: list[str] = Field(default_factory=list, description="Filters `column<op>value`, all of which a product "
                             "must pass; see GET /v1/columns.")
    min_score: float = Field(0.0, ge=0, le=1, description="Leave out results scoring below this.")
    like: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES,
                            description="Products the shopper liked: the query moves toward them (Rocchio).")
    unlike: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES,
                              description="Products the shopper marked 'not like this': the query moves away, "
                              "and they are left out of the results.")
    q: str | None = Field(None, description="Words: only products matching them are ranked, inside the Faiss search.")
    index_version: str | None = Field(None, description="The index version the search started on (its "
                                      "classification's); 409 `version_skew` when the service holds another.")

    @field_validator("embedding")
    @classmethod
    def _decodable(cls, value: str) -> str:
        decode_embedding(value)
        return value

    def vector(self) -> np.ndarray:
        return decode_embedding(self.embedding)


class Hit(BaseModel):
    """One product, standing for its variant group, represented by its best-scoring photo."""

    id: str = Field(description="The product's id.")
    name: str
    category: str
    score: float = Field(description="Cosine similarity of the best photo, from -1 to 1; for a search by words "
                         "alone, bm25 relevance in 0-1.")
    extra: dict[str, str] = Field(default_factory=dict, description="Further products.csv columns, e.g. price, url.")
    group_id: str = Field("", description="The variant group (`item_group_id`, else the product's id).")
    photo: int = Field(0, description="Which of the product's photos matched, from 0.")
    photos: int = Field(1, description="How many photos the product has.")
    variants: int = Field(1, description="How many products its variant group has, itself included.")
    matched: list[str] = Field(default_factory=list, description="The fields the search words matched, e.g. name; "
                               "`meaning` when the sentence model found it near the words.")


class FilterableColumn(BaseModel):
    """A products.csv column that `where` can filter on."""

    name: str
    kind: Literal["number", "text"] = Field(description="`number` when every non-empty cell is one.")
    products: int = Field(description="Products with a value in this column.")
    min: float | None = None
    max: float | None = None
    distinct: int | None = Field(None, description="Text columns: how many different values.")
    values: list[str] = Field(default_factory=list, description="Text columns: the most common values, commonest first.")


class CatalogColumns(BaseModel):
    columns: list[FilterableColumn]
    index_version: str


class SearchResponse(BaseModel):
    category: str
    hits: list[Hit]
    index_version: str


class TextSearchResponse(BaseModel):
    """Catalogue items found by words; each hit's `score` is its bm25 relevance squashed to 0-1."""

    query: str
    category: str | None
    hits: list[Hit]
    index_version: str
    refined: bool = Field(False, description="Refined by liked or unliked products: ranked by cosine similarity "
                          "to the moved query, not by bm25.")


class Readiness(BaseModel):
    """What every `/readyz` answers: 200 with `ready` true, else 503 with `reason` in words."""

    ready: bool
    reason: str | None = None


class ClassifierReadiness(Readiness):
    model: ModelInfo | None = Field(None, description="What serves now; `precision` is the served precision.")
    int8_gate: GateFigures | None = Field(None, description="The serving version's int8 gate, if it has one.")
    warnings: list[str] = Field(default_factory=list, description="E.g. int8 forced although its gate failed.")
    categories: list[str] = Field(default_factory=list)
    index_version: str | None = None


class SimilarityReadiness(Readiness):
    index_version: str | None = None
    model_id: str | None = None
    weights: str | None = None
    text_model: TextModelInfo | None = Field(None, description="The sentence model ranking words by meaning beside "
                                             "bm25; None: bm25 alone.")
    categories: dict[str, int] = Field(default_factory=dict, description="Items per category.")


class ReloadResponse(BaseModel):
    index_version: str
    previous_version: str | None
