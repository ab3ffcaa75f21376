"""Everything the indexing job reads from its flags and the environment, in one place.

Each command's flags and environment variables come from its class here (lookalike.settings.read_command_line),
so `INDEX=... WEIGHTS=random make index` and `python -m indexing --index ... --weights random` do the same thing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, CliVariadicArg, SettingsConfigDict

from lookalike import settings as shared
from lookalike.catalog.projection import REDUCE_HELP, Reduction
from lookalike.catalog.text_index import DEFAULT_EXCLUDED
from lookalike.errors import BadReduction

INDEX_ROOT_HELP = "Index root: the published versions and `current`, the one the services serve."
NOTIFY_HELP = "Service base URLs to ask to reload afterwards, e.g. http://127.0.0.1:8001 http://127.0.0.1:8002."


class IndexingSettings(shared.ModelSettings):
    """Build a new index version from a catalogue folder, publish it, and prune old versions."""

    index: Path = Field(shared.INDEX_ROOT, description=INDEX_ROOT_HELP)
    catalog: Path | None = Field(None, description=(
        "Folder with one sub-folder of photos per category, and optionally products.csv. "
        "Unset: reference_images, else the demo catalogue while that is empty."))
    text_weights: dict[str, float] = Field({}, description=(
        'bm25 weight per searched field, as JSON, e.g. {"name": 10, "colour": 3}; 0 leaves a field out. '
        "Default: name 10, category 5, other text columns 2, imagenet_tags 1."))
    text_exclude: list[str] = Field(sorted(DEFAULT_EXCLUDED), description=(
        'products.csv columns never searched, as JSON, e.g. ["url", "license"].'))
    text_model: str = Field(shared.TEXT_MODEL, description=shared.TEXT_MODEL_DOC + " Its name and a digest of its "
                            "files go into the manifest; the similarity service must be set to the same model.")
    int8_calibration_images: int = Field(300, ge=1, description="Catalogue photos the int8 ranges are calibrated on.")
    int8_gate_images: int = Field(200, ge=2, description="Other catalogue photos the gate compares fp32 and int8 on.")
    int8_min_cosine: float = Field(0.98, description="Mean fp32-int8 cosine the gate asks for.")
    int8_min_top10_overlap: float = Field(0.9, description="Mean top-10 overlap within category the gate asks for.")
    int8_min_head_agreement: float = Field(0.98, description="Share of equal head decisions the gate asks for.")


class IndexBuildSettings(IndexingSettings):
    """Build a new index version from a catalogue folder, publish it, and tell running services to reload."""

    batch_size: int = Field(16, ge=1, description="Photos embedded per forward pass.")
    workers: int = Field(2, ge=1, description="Threads decoding photos ahead of the network.")
    index_type: str = Field("Flat", description="Faiss factory string for each category, e.g. Flat, HNSW32, IVF256,Flat.")
    keep: int = Field(3, ge=1, description=(
        "Index versions to keep, the new one included; older ones are deleted, the serving one never is."))
    notify: CliVariadicArg[shared.CommaSeparated] = Field([], description=NOTIFY_HELP)
    feed: str | None = Field(None, description=(
        "A Google Merchant Center feed to index instead of a catalogue folder: an http(s) URL or a file, "
        "RSS 2.0 XML or TSV."))
    feed_categories: Path | None = Field(None, description=(
        "The store's category mapping file (`category: product_type path, google_product_category path or id`, "
        "one a line); default: Google's taxonomy for chair, sofa, table, bed and lamp."))
    feed_photos: Path | None = Field(None, description="The feed's photo cache; default $INDEX/feed-photos.")
    feed_allowed_hosts: CliVariadicArg[shared.CommaSeparated] = Field(
        [], validation_alias=AliasChoices("allow_host", "feed_allowed_hosts"), description=(
            "Hosts, addresses or networks feed downloads may reach although they are loopback, private, "
            "link-local or multicast, e.g. 127.0.0.1 or 10.0.0.0/8 or cdn.internal (comma-separated in "
            "FEED_ALLOWED_HOSTS; `--allow-host` repeatable)."))
    feed_max_bytes: int = Field(200 * 1024 * 1024, ge=1, description="The largest feed read, in bytes.")
    feed_max_photo_bytes: int = Field(20 * 1024 * 1024, ge=1, description="The largest photo downloaded, in bytes.")
    feed_connect_timeout_s: float = Field(10.0, gt=0, description="Seconds to connect to a feed or photo server.")
    feed_timeout_s: float = Field(60.0, gt=0, description="Seconds one download may take in all, redirects included.")
    feed_max_redirects: int = Field(5, ge=0, description="Redirects followed for one download.")
    feed_concurrency: int = Field(16, ge=1, description="Downloads at once, in all.")
    feed_per_host: int = Field(4, ge=1, description="Downloads at once from one host.")
    feed_max_drop_share: float = Field(0.10, ge=0, le=1, description=(
        "The share of the served products a feed run may drop before it refuses to publish (without --force)."))
    reduce: str = Field("none", description=f"Dimension reduction of the indexed vectors: {REDUCE_HELP}.")
    self_eval_margin: float = Field(0.05, ge=0, le=1, description=(
        "The publish gate: refuse a new version whose self-evaluation recall@10 lies more than this below the "
        "served version's (both on at least 20 judged queries); --force publishes all the same."))
    force: bool = Field(False, description=(
        "Publish even if a safety check refuses: the self-evaluation gate (SELF_EVAL_MARGIN), or more than "
        "FEED_MAX_DROP_SHARE of the served products dropping out of a feed."))

    @field_validator("reduce")
    @classmethod
    def _reduce_understood(cls, value: str) -> str:
        try:
            return str(Reduction.parse(value))
        except BadReduction as exc:
            raise ValueError(str(exc)) from None


class RollbackSettings(BaseSettings):
    """Serve an older index version again, and tell running services to reload."""

    model_config = SettingsConfigDict(env_prefix="ROLLBACK_", extra="ignore", env_ignore_empty=True)

    index: Path = Field(shared.INDEX_ROOT, validation_alias="INDEX", description=INDEX_ROOT_HELP)
    to: str | None = Field(None, description="Version to serve; unset: the one before the serving one.")
    notify: CliVariadicArg[shared.CommaSeparated] = Field([], description=NOTIFY_HELP)


class VersionsSettings(BaseSettings):
    """List the index versions kept; `*` marks the one served."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    index: Path = Field(shared.INDEX_ROOT, description=INDEX_ROOT_HELP)
