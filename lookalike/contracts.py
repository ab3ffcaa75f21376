"""What crosses the wire between the services, defined once and imported by both ends.

An embedding travels as base64 of little-endian float32: a 2048-d vector is 10.9 kB of JSON
instead of about 40 kB as a list of decimal numbers, and it decodes without loss.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
from pydantic import BaseModel, Field, field_validator

EMBEDDING_DTYPE = np.dtype("<f4")
MAX_K = 100


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
    precision: str = "fp32"


class ClassifyResponse(BaseModel):
    """The classifier's answer for one image: one forward pass, both outputs."""

    category: str
    confidence: float
    probabilities: dict[str, float]
    embedding: str = Field(description="L2-normalised pool5 embedding, base64 little-endian float32.")
    model: ModelInfo
    index_version: str
    timings_ms: dict[str, float]

    def vector(self) -> np.ndarray:
        return decode_embedding(self.embedding)


class SearchRequest(BaseModel):
    """Nearest catalogue items to an embedding, within one category."""

    embedding: str
    category: str
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_ids: list[str] = Field(default_factory=list, description="Items to leave out, e.g. the query item.")

    @field_validator("embedding")
    @classmethod
    def _decodable(cls, value: str) -> str:
        decode_embedding(value)
        return value

    def vector(self) -> np.ndarray:
        return decode_embedding(self.embedding)


class Hit(BaseModel):
    id: str
    name: str
    category: str
    score: float = Field(description="Cosine similarity, from -1 to 1.")
    extra: dict[str, str] = Field(default_factory=dict, description="Further products.csv columns, e.g. price, url.")


class SearchResponse(BaseModel):
    category: str
    hits: list[Hit]
    index_version: str


class ClassifierReadiness(BaseModel):
    ready: bool
    reason: str | None = None
    model: ModelInfo | None = None
    categories: list[str] = Field(default_factory=list)
    index_version: str | None = None


class SimilarityReadiness(BaseModel):
    ready: bool
    reason: str | None = None
    index_version: str | None = None
    model_id: str | None = None
    weights: str | None = None
    categories: dict[str, int] = Field(default_factory=dict, description="Items per category.")


class ReloadResponse(BaseModel):
    index_version: str
    previous_version: str | None
