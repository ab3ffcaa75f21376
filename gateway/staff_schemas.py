"""What the staff endpoints answer (`/api/v1/staff/...`): the search log's reports and the catalogue's health."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from lookalike.catalog.health import CatalogueReport

EventType = Literal["click", "add_to_cart", "purchase"]


class AnalyticsEvent(BaseModel):
    """What a shopper did with a search's result: the page and the widget send clicks, the store's own site the rest."""

    type: EventType
    query_id: str = Field(min_length=1, max_length=1200, description="The `query_id` of the search that showed it.")
    product: str = Field(min_length=1, max_length=200, description="The product's id, as the search returned it.")
    position: int | None = Field(None, ge=1, le=1000, description=(
        "Where the search showed it, counted from 1; checked against the `query_id` when given."))


class EventAccepted(BaseModel):
    accepted: bool = Field(description="false: GATEWAY_ANALYTICS is off, and the event was dropped.")


class SearchesOfDay(BaseModel):
    day: str = Field(description="UTC date, YYYY-MM-DD.")
    kind: str
    searches: int


class LatencyOfDay(BaseModel):
    day: str
    searches: int
    median_ms: float
    p95_ms: float


class Overview(BaseModel):
    """The period's searches and what shoppers did with them."""

    since: float = Field(description="Unix time the period starts.")
    days: int
    searches: int
    sessions: int = Field(description="Distinct sessions per day, summed (the salt changes daily, so a session "
                          "counts once a day); Sec-GPC searches count in no session.")
    no_result_share: float | None = Field(description="Share of searches that returned no result.")
    clicks: int
    click_through_rate: float | None = Field(description="Share of searches with at least one click.")
    mean_click_position: float | None = Field(description="Mean position (from 1) of the results clicked.")
    add_to_cart: int
    purchases: int
    conversion_rate: float | None = Field(description="Share of searches followed by a purchase of a result.")
    per_day: list[SearchesOfDay]
    latency: list[LatencyOfDay]


class WordsCount(BaseModel):
    words: str = Field(description="The normalised words.")
    searches: int


class WeakCategory(BaseModel):
    """Photo searches of one category whose best match fell below the category's usual range."""

    category: str
    photo_searches: int
    usual_low: float | None = Field(description="The low end of the usual range of best scores (lower quartile "
                                    "minus 1.5 interquartile ranges); None under 4 searches.")
    below: int
    share: float | None


class ScoreBin(BaseModel):
    low: float
    high: float
    searches: int


class CategorySwitch(BaseModel):
    decided: str = Field(description="What the classifier decided.")
    chosen: str = Field(description="The category the shopper switched to.")
    searches: int


class UnmetDemand(BaseModel):
    since: float
    days: int
    no_results: list[WordsCount] = Field(description="Words searched that found nothing, most searched first.")
    no_clicks: list[WordsCount] = Field(description="Words whose results were never clicked, most searched first.")
    weak_photos: list[WeakCategory] = Field(description="What shoppers photograph that the store doesn't sell.")
    best_scores: list[ScoreBin] = Field(description="Histogram of photo searches' best scores, 0 to 1.")
    switches: list[CategorySwitch] = Field(description="Where the classifier errs: decided X, shopper chose Y.")


class CategoryHealth(BaseModel):
    category: str
    products: int
    photos: int
    recall_at_1: float | None = Field(description="Self-evaluation, from the serving manifest; None: too few "
                                      "products with two photos to judge.")
    recall_at_10: float | None


class VersionHealth(BaseModel):
    version: str
    serving: bool
    published_at: datetime
    weights: str
    products: int | None = Field(description="From its catalogue report; None for a version built before reports.")
    photos: int
    categories: int
    recall_at_1: float | None
    recall_at_10: float | None


class CatalogueHealth(BaseModel):
    index_version: str | None = Field(description="The serving version; None: no index built yet.")
    weights: str | None
    categories: list[CategoryHealth]
    versions: list[VersionHealth] = Field(description="The versions kept, newest first.")
    report: CatalogueReport | None = Field(description="The serving version's catalogue report, from the job "
                                           "that built it; None for versions built before reports.")
