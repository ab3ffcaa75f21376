"""Everything the indexing job and the evaluation read from the environment, in one place.

The command line's flags default to these, so `INDEX=... WEIGHTS=random make index` and
`python -m indexing --index ... --weights random` do the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from lookalike import settings as shared
from lookalike.catalog.text_index import DEFAULT_EXCLUDED


class IndexingSettings(shared.ModelSettings):
    """INDEX, CATALOG, WEIGHTS, PRECISION, TEXT_WEIGHTS and TEXT_EXCLUDE, the int8 gate's INT8_* figures, and FEED_*."""

    index: Path = shared.INDEX_ROOT
    catalog: Path | None = None
    text_weights: dict[str, float] = Field(default_factory=dict, description=(
        'bm25 weight per searched field, as JSON, e.g. {"name": 10, "colour": 3}; 0 leaves a field out. '
        "Default: name 10, category 5, other text columns 2, imagenet_tags 1."))
    text_exclude: list[str] = Field(default_factory=lambda: sorted(DEFAULT_EXCLUDED), description=(
        'products.csv columns never searched, as JSON, e.g. ["url", "license"].'))
    int8_calibration_images: int = Field(300, ge=1, description="Catalogue photos the int8 ranges are calibrated on.")
    int8_gate_images: int = Field(200, ge=2, description="Other catalogue photos the gate compares fp32 and int8 on.")
    int8_min_cosine: float = Field(0.98, description="Mean fp32-int8 cosine the gate asks for.")
    int8_min_top10_overlap: float = Field(0.9, description="Mean top-10 overlap within category the gate asks for.")
    int8_min_head_agreement: float = Field(0.98, description="Share of equal head decisions the gate asks for.")
    feed: str | None = Field(None, description=(
        "A Google Merchant Center feed to index instead of a catalogue folder: an http(s) URL or a file, "
        "RSS 2.0 XML or TSV."))
    feed_categories: Path | None = Field(None, description=(
        "The store's category mapping file (`category: product_type path, google_product_category path or id`, "
        "one a line); default: Google's taxonomy for chair, sofa, table, bed and lamp."))
    feed_photos: Path | None = Field(None, description="The feed's photo cache; default $INDEX/feed-photos.")
    feed_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "Comma-separated hosts, addresses or networks downloads may reach although they are loopback, private, "
        "link-local or multicast, e.g. 127.0.0.1 or 10.0.0.0/8 or cdn.internal."))
    feed_max_bytes: int = Field(200 * 1024 * 1024, ge=1, description="The largest feed read, in bytes.")
    feed_max_photo_bytes: int = Field(20 * 1024 * 1024, ge=1, description="The largest photo downloaded, in bytes.")
    feed_connect_timeout_s: float = Field(10.0, gt=0, description="Seconds to connect to a feed or photo server.")
    feed_timeout_s: float = Field(60.0, gt=0, description="Seconds one download may take in all, redirects included.")
    feed_max_redirects: int = Field(5, ge=0, description="Redirects followed for one download.")
    feed_concurrency: int = Field(16, ge=1, description="Downloads at once, in all.")
    feed_per_host: int = Field(4, ge=1, description="Downloads at once from one host.")
    feed_max_drop_share: float = Field(0.10, ge=0, le=1, description=(
        "The share of the served products a feed run may drop before it refuses to publish (without --force)."))

    @field_validator("feed_allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else value
