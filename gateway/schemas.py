"""The public API's response shapes."""

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from lookalike.contracts import FilterableColumn, Readiness
from lookalike.text_query import MAX_QUERY_CHARS, normalise_query


class Result(BaseModel):
    """One product, standing for its variant group, shown by the photo of it that matched best."""

    id: str = Field(description="The product's id.")
    name: str
    category: str
    score: float = Field(description="Cosine similarity to the query photo, from -1 to 1; for a search by words "
                                     "alone, the bm25 relevance squashed to 0-1, or with a text model the fused "
                                     "rank of bm25 and meaning over its best (1: an exact name, or first on both).")
    image_url: str = Field(description="The product's photo that matched.")
    extra: dict[str, str] = Field(default_factory=dict, description="Further products.csv columns, e.g. price, url.")
    group_id: str = Field(description="Its variant group (`item_group_id`, else its id); one result per group.")
    photos: int = Field(description="How many photos the product has.")
    variants: int = Field(description="How many products its variant group has, itself included.")
    learned: bool = Field(False, description="Shoppers' votes for these words moved this result, or brought it in "
                                             "(text searches only).")
    matched: list[str] = Field(default_factory=list, description=(
        "Fields the search words matched (name, category, a products.csv column, imagenet_tags), and `meaning` when "
        "the text model found it near the words; empty without words."))


class SearchResult(BaseModel):
    category: str = Field(description="The category searched: the classifier's decision, or the one asked for.")
    confidence: float = Field(description="The classifier's probability for `category`.")
    probabilities: dict[str, float]
    searched: list[str] = Field(description="Categories searched: `category`, plus the runner-up when the "
                                            "classifier was unsure (GATEWAY_HEDGE_BELOW).")
    results: list[Result] = Field(description="Most similar first; one per product group.")
    min_score: float = Field(description="The cutoff applied: results scoring below it were left out.")
    weights: str = Field(description="`imagenet`, `random` or `file:<name>`. With `random`, results mean nothing.")
    index_version: str
    timings_ms: dict[str, float] = Field(description="`classify`, `search` and `total`.")
    q: str | None = Field(None, description="The words the photo's results were narrowed by, if any.")
    photo: str | None = Field(None, description=(
        "A handle for this photo, held by this gateway for a while (GATEWAY_PHOTO_HANDLE_TTL_S after its last "
        "use): steer the search with `POST /api/v1/search?photo=<handle>&...` and no body, instead of uploading "
        "the photo again. A 410 `photo_expired` answer means: upload the photo again."))
    query_id: str = Field("", description=(
        "This search's receipt: a vote (`POST /api/v1/feedback`) or an event (a click) names it, with a product "
        "the search returned. Signed; valid for GATEWAY_QUERY_ID_TTL_S."))


class TextSearchResult(BaseModel):
    """Products found by words alone: the same results as a photo search, ranked by bm25 (or refined)."""

    q: str
    category: str | None = Field(description="The category searched, or None for all of them.")
    results: list[Result] = Field(description="Best match first.")
    index_version: str
    timings_ms: dict[str, float] = Field(description="`search` and `total`.")
    refined: bool = Field(False, description="Refined by `like` / `unlike`: the words' top products' mean vector, "
                          "moved toward the liked and away from the unliked, ranks the results by cosine similarity.")
    query_id: str = Field("", description=(
        "This search's receipt: a vote (`POST /api/v1/feedback`) or an event (a click) names it, with a product "
        "the search returned. Signed; valid for GATEWAY_QUERY_ID_TTL_S."))


class SimilarItems(BaseModel):
    item_id: str
    category: str
    results: list[Result]
    min_score: float
    index_version: str
    query_id: str = Field("", description=(
        "This search's receipt: a vote (`POST /api/v1/feedback`) or an event (a click) names it, with a product "
        "the search returned. Signed; valid for GATEWAY_QUERY_ID_TTL_S."))


class CatalogInfo(BaseModel):
    categories: dict[str, int] = Field(description="Items per category.")
    weights: str | None
    index_version: str | None
    state: Literal["ready", "empty", "unavailable"] = Field(
        "ready", description="`empty`: no index built yet, the store must add images and run `make index`; "
                             "`unavailable`: a service is down or not ready (see `reason`).")
    reason: str | None = Field(None, description="Why the state is not `ready`, in words.")
    max_upload_bytes: int | None = Field(None, description="Largest upload accepted, so a page can check first.")
    columns: list[FilterableColumn] = Field(default_factory=list, description="The products.csv columns that "
                                            "`where` filters on, with their kind and range or most common values.")
    filters: list[FilterableColumn] = Field(default_factory=list, description=(
        "The columns among them that the page offers as filters, in FILTER_COLUMNS order: shopper-facing ones "
        "(price, availability, ...), not bookkeeping (license, source)."))


class GatewayReadiness(Readiness):
    """The public `/readyz`: ready or not, and why in words; the services' own `/readyz` (internal ports) say more."""

    weights: str | None = None


class FeedbackVote(BaseModel):
    """One shopper's opinion of one result. Stored without the photo, its embedding or the raw session id."""

    query_id: str = Field(description=(
        "The `query_id` of the search answer that showed the product, made with this session: a words vote "
        "(`query` set) names a search by words, a photo vote (`query` null) a search by photo."))
    query: str | None = Field(max_length=MAX_QUERY_CHARS, description="The words searched; null for a photo search.")
    item_id: str = Field(min_length=1, max_length=200)
    vote: Literal["like", "unlike"]
    category: str | None = Field(None, max_length=200,
                                 description="The decided category of a photo search; required when `query` is null.")

    @model_validator(mode="after")
    def _photo_votes_name_the_category(self) -> "FeedbackVote":
        if self.query is None and not self.category:
            raise ValueError("a photo search's vote (query null) needs the decided `category`")
        if self.query is not None and not normalise_query(self.query):
            raise ValueError("`query` holds no words; send the words searched, or null for a photo search")
        return self


class FeedbackStored(BaseModel):
    query: str = Field(description="What the vote is stored under: the normalised words, or `photo`.")
    item_id: str
    vote: Literal["like", "unlike"]


class FeedbackForgotten(BaseModel):
    forgotten: int = Field(description="Votes deleted.")


class FeedbackStats(BaseModel):
    votes: int
    sessions: int
    oldest: float | None = Field(description="Unix time of the oldest vote kept.")
    retention_days: float


class LearnedItem(BaseModel):
    id: str
    net_networks: int = Field(description=(
        "Client networks (IPv4 /24s, IPv6 /64s) that liked it for the query, minus those that unliked it."))
    prior: float = Field(description="What it adds to a text score (0 to 1), bounded by GATEWAY_LEARNT_WEIGHT.")


class LearnedForQuery(BaseModel):
    query: str = Field(description="The normalised query the votes are stored under.")
    items: list[LearnedItem] = Field(description="Highest prior first.")
