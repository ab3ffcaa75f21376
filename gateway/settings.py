"""Everything the gateway reads from the environment, in one place."""

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from gateway.cross_origin import exact_origin
from lookalike import settings as shared
from lookalike.settings import ServiceSettings, UploadLimits


class GatewaySettings(ServiceSettings):
    """Serve the web page and the public API (/api/v1), in front of the classifier and the similarity service."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", env_ignore_empty=True)

    port: int = Field(8000, description="Port to listen on: the page and the public API.")
    classifier_port: int = Field(8001, validation_alias="CLASSIFIER_PORT",
                                 description="The classifier's port on 127.0.0.1, unless CLASSIFIER_URL says so.")
    similarity_port: int = Field(8002, validation_alias="SIMILARITY_PORT",
                                 description="The similarity service's port on 127.0.0.1, unless SIMILARITY_URL says so.")
    classifier_url: str = Field("", validation_alias=AliasChoices("GATEWAY_CLASSIFIER_URL", "CLASSIFIER_URL"),
                                description="Defaults to http://127.0.0.1:$CLASSIFIER_PORT")
    similarity_url: str = Field("", validation_alias=AliasChoices("GATEWAY_SIMILARITY_URL", "SIMILARITY_URL"),
                                description="Defaults to http://127.0.0.1:$SIMILARITY_PORT")
    classify_timeout_s: float = Field(15.0, gt=0, description="Covers queueing behind other uploads.")
    search_timeout_s: float = Field(5.0, gt=0, description="Timeout of each call to the similarity service.")
    version_wait_s: float = Field(10.0, gt=0, description=(
        "While the services reload one after the other, how long a search waits for them to serve one index "
        "version (then 503 with Retry-After)."))
    hedge_below: float = Field(0.0, ge=0, le=1, description=(
        "When the classifier's top probability is below this, search the top two categories and merge "
        "by score. 0 (the default) never hedges; see README, Measuring quality."))
    min_score: float = Field(0.0, ge=0, le=1, description=(
        "Results scoring below this are left out when a request names no `min_score`; the page then says "
        "there is no close match. Never applied while the weights are `random`, whose scores mean nothing."))
    replica_refresh_s: float = Field(5.0, gt=0, description="How often service names are resolved again to find "
                                     "replicas; CLASSIFIER_URL and SIMILARITY_URL may also list several, comma-separated.")
    max_upload_bytes: int = Field(shared.MAX_UPLOAD_BYTES,
                                  validation_alias=AliasChoices("GATEWAY_MAX_UPLOAD_BYTES", "MAX_UPLOAD_BYTES"),
                                  description="Largest upload accepted; a larger one gets 413.")
    upload_limits: UploadLimits = Field(default_factory=UploadLimits, description="MAX_INFLIGHT_UPLOAD_BYTES, "
                                        "UPLOAD_TIMEOUT_S, ...: see lookalike/settings.py.")
    photo_handle_ttl_s: float = Field(900, gt=0, description=(
        "A search's photo handle (`photo` in its answer) is held this long after its last use; later searches "
        "name it instead of uploading the photo again. An expired one gets 410 photo_expired and the page re-sends."))
    photo_handle_max_entries: int = Field(5000, ge=1, description="Photo handles held at most; the least "
                                          "recently used go first.")
    photo_handle_max_bytes: int = Field(128_000_000, ge=1, description=(
        "Memory the photo handles may hold in all: the photos kept for a later region (about 100 kB each from "
        "the page) and the embeddings (11 kB each). The least recently used go first."))
    photo_handle_max_photo_bytes: int = Field(1_000_000, ge=0, description=(
        "An upload up to this size is kept with its handle, so a new region of it needs no second upload; a "
        "larger one (a full-size photo from an API client) keeps its classification only. 0 keeps no photo."))
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices(
            "GATEWAY_ALLOWED_ORIGINS", "GATEWAY_CORS_ALLOW_ORIGINS", "CORS_ALLOW_ORIGINS"), description=(
            "Comma-separated sites whose pages may call the API from a browser (the `<lookalike-search>` widget): "
            "exact origins with scheme and port, e.g. `https://shop.example,https://www.shop.example:8443`. "
            "Empty (default): same origin only. GATEWAY_CORS_ALLOW_ORIGINS is the old name."))

    index: Path = Field(shared.INDEX_ROOT, validation_alias=AliasChoices("GATEWAY_INDEX", "INDEX"),
                        description="The index root; the default feedback database lives in it.")
    feedback_db_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("GATEWAY_FEEDBACK_DB_URL", "FEEDBACK_DB_URL"),
        description="postgresql://user:password@host:port/db for several replicas (a secret: it holds the password); "
                    "unset (default) is an SQLite file, $INDEX/feedback.sqlite3.")
    feedback_retention_days: float = Field(180, gt=0, validation_alias=AliasChoices(
        "GATEWAY_FEEDBACK_RETENTION_DAYS", "FEEDBACK_RETENTION_DAYS"), description="Votes older than this are pruned.")
    feedback_per_minute: int = Field(30, ge=1, validation_alias=AliasChoices(
        "GATEWAY_FEEDBACK_PER_MINUTE", "FEEDBACK_PER_MINUTE"), description="Votes one session may send per minute.")
    feedback_per_session: int = Field(1000, ge=1, validation_alias=AliasChoices(
        "GATEWAY_FEEDBACK_PER_SESSION", "FEEDBACK_PER_SESSION"), description="Votes one session may keep in all.")
    feedback_prune_every_s: float = Field(3600, gt=0, description=(
        "How often expired votes, search-log rows and events are deleted."))
    learnt_weight: float = Field(1.0, ge=0, description=(
        "The most that shoppers' votes can add to (or take from) an item's text score: the weight of a strong "
        "text match (scores run 0 to 1): however many networks vote, an item rises by at most one strong match."))
    learnt_full_at: int = Field(3, ge=2, description=(
        "Client networks (IPv4 /24s or IPv6 /64s, not sessions) agreeing on an item for the learnt weight to be full; "
        "at least 2, so no one network reaches it alone."))
    learnt_min_networks: int = Field(2, ge=1, description=(
        "Client networks that must agree on an item before votes move it at all: with 2 (default), no one household "
        "or office reorders the words' results for everyone, however many sessions it votes from."))
    filter_columns: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["price", "availability", "brand", "color", "material"],
        validation_alias=AliasChoices("GATEWAY_FILTER_COLUMNS", "FILTER_COLUMNS"), description=(
            "Comma-separated catalogue columns the page offers as filters, in this order; `where` accepts every "
            "column all the same. Default: the shopper-facing ones a product feed brings."))
    admin_token: SecretStr | None = Field(None, validation_alias=AliasChoices("LOOKALIKE_ADMIN_TOKEN"),
                                          description="Bearer token for operator endpoints; unset refuses them all.")
    session_cookie_secure: bool = Field(False, description="Mark the session cookie Secure (behind HTTPS).")
    signing_secret: SecretStr | None = Field(None, description=(
        "Signs every search's `query_id` and salts the stored hashes of voters' networks; every replica needs the "
        "same one. Unset (default): a random one kept in the feedback database, which replicas sharing it share."))
    query_id_ttl_s: float = Field(86400, gt=0, description=(
        "How long a search's `query_id` may be named by a vote or an event; an older one gets 410 query_id_expired."))
    analytics: bool = Field(True, description=(
        "Keep the search log and the events the staff page (/staff) reports on: no photo, no IP, a daily-salted "
        "session hash. false: nothing is logged and events are accepted and dropped."))
    analytics_retention_days: float = Field(90, gt=0, validation_alias=AliasChoices(
        "GATEWAY_ANALYTICS_RETENTION_DAYS", "ANALYTICS_RETENTION_DAYS"),
        description="Search-log rows and events older than this are pruned.")
    analytics_queue: int = Field(10_000, ge=1, description=(
        "Log entries waiting to be written at most; past it (a slow or unreachable database) entries are dropped "
        "and counted on /metrics, never a search delayed."))
    analytics_batch: int = Field(500, ge=1, description="Log entries written in one transaction at most.")
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("GATEWAY_FORWARDED_ALLOW_IPS", "FORWARDED_ALLOW_IPS"),
        description=("Comma-separated addresses or networks of the reverse proxies whose `X-Forwarded-For` names the "
                     "real client (rate limits and votes count clients by it). Empty (default): none is trusted, "
                     "the socket's peer is the client."))

    searches_per_minute: float = Field(120, ge=0, description=(
        "Searches (photo, steered, words, similar) one client address (IPv4, or IPv6 /64) may send per minute, "
        "after a burst of GATEWAY_SEARCH_BURST; beyond it, 429 rate_limited with Retry-After. 0: no limit."))
    search_burst: int = Field(60, ge=1, description="Searches one client address may send at once.")
    votes_per_minute: float = Field(60, ge=0, description=(
        "Votes one client address may send per minute, after GATEWAY_VOTE_BURST (each session has its own "
        "FEEDBACK_PER_MINUTE too). 0: no limit."))
    vote_burst: int = Field(30, ge=1, description="Votes one client address may send at once.")
    events_per_minute: float = Field(300, ge=0, description=(
        "Search analytics events one client address may send per minute, after GATEWAY_EVENT_BURST. 0: no limit."))
    event_burst: int = Field(120, ge=1, description="Events one client address may send at once.")
    rate_limit_max_clients: int = Field(20_000, ge=1, description=(
        "Client addresses whose buckets are tracked per kind; the least recently seen is forgotten first "
        "(its bucket would have refilled anyway). About 300 bytes each: 6 MB per kind at the default."))

    @field_validator("allowed_origins", "filter_columns", "forwarded_allow_ips", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [o.strip() for o in value.split(",") if o.strip()] if isinstance(value, str) else value

    @field_validator("allowed_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        return [exact_origin(origin) for origin in origins]

    @model_validator(mode="after")
    def _default_urls(self) -> "GatewaySettings":
        self.classifier_url = self.classifier_url or f"http://127.0.0.1:{self.classifier_port}"
        self.similarity_url = self.similarity_url or f"http://127.0.0.1:{self.similarity_port}"
        return self
