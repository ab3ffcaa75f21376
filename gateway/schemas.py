"""The public API's response shapes."""

from typing import Literal

from pydantic import BaseModel, Field

from lookalike.contracts import ClassifierReadiness, SimilarityReadiness


class Result(BaseModel):
    id: str
    name: str
    category: str
    score: float = Field(description="Cosine similarity to the query, from -1 to 1.")
    image_url: str
    extra: dict[str, str] = Field(default_factory=dict, description="Further products.csv columns, e.g. price, url.")


class SearchResult(BaseModel):
    category: str = Field(description="The category searched: the classifier's decision, or the one asked for.")
    confidence: float = Field(description="The classifier's probability for `category`.")
    probabilities: dict[str, float]
    searched: list[str] = Field(description="Categories searched: `category`, plus the runner-up when the "
                                            "classifier was unsure (GATEWAY_HEDGE_BELOW).")
    results: list[Result] = Field(description="Most similar first.")
    weights: str = Field(description="`imagenet`, `random` or `file:<name>`. With `random`, results mean nothing.")
    index_version: str
    timings_ms: dict[str, float] = Field(description="`classify`, `search` and `total`.")


class SimilarItems(BaseModel):
    item_id: str
    category: str
    results: list[Result]
    index_version: str


class CatalogInfo(BaseModel):
    categories: dict[str, int] = Field(description="Items per category.")
    weights: str | None
    index_version: str | None
    state: Literal["ready", "empty", "unavailable"] = Field(
        "ready", description="`empty`: no index built yet, the store must add images and run `make index`; "
                             "`unavailable`: a service is down or not ready (see `reason`).")
    reason: str | None = Field(None, description="Why the state is not `ready`, in words.")
    max_upload_bytes: int | None = Field(None, description="Largest upload accepted, so a page can check first.")


class GatewayReadiness(BaseModel):
    ready: bool
    reason: str | None = None
    weights: str | None = None
    classifier: ClassifierReadiness | None = None
    similarity: SimilarityReadiness | None = None
