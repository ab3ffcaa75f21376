"""Defaults that more than one program shares, and the settings every program reads the same way.

Each program has its own settings object (`ClassifierSettings`, `GatewaySettings`, ...); the
values they have in common are defined here once, so a service and the indexing job can't
disagree about where the index lives or how many pixels a photo may have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

INDEX_ROOT = Path("var/index")
"""Where `make index` publishes and the services read, unless INDEX says otherwise."""

MAX_PIXELS = 60_000_000
"""Largest photo decoded: a 48 MP phone photo fits, a decompression bomb does not."""

MAX_UPLOAD_BYTES = 20_000_000
"""Largest upload accepted by the gateway and the classifier."""

MODEL_WEIGHTS = "auto"
"""`imagenet`, `random`, `auto` (ImageNet where it can be loaded, else random) or a .pth path."""

PRECISION = "auto"


class LoggingSettings(BaseSettings):
    """LOG_LEVEL and LOG_FORMAT (`json`, or `text` for a person at a terminal), for every program."""

    model_config = SettingsConfigDict(env_prefix="LOG_", extra="ignore", env_ignore_empty=True)

    level: str = "INFO"
    format: Literal["json", "text"] = "json"

    @field_validator("format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class ModelSettings(BaseSettings):
    """WEIGHTS and PRECISION, for the programs that embed photos themselves (indexing, eval, bench)."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    weights: str = MODEL_WEIGHTS
    precision: str = PRECISION

# What one service lets a client hold: connections, header time, upload bytes and upload time.
# Read without a service's prefix: each service runs in its own process (and container), so
# `MAX_INFLIGHT_UPLOAD_BYTES=...` is set per service. The connection limits start with `HTTP_`.
# The defaults are sized for the 24 GB, 2-core machine the README describes.


class ConnectionLimits(BaseSettings):
    """What uvicorn enforces for every connection, before a request reaches the app."""

    model_config = SettingsConfigDict(env_prefix="HTTP_", extra="ignore", env_ignore_empty=True)

    max_connections: int = Field(1024, ge=1, description=(
        "Connections at once; a request arriving beyond them gets 503 (uvicorn's limit_concurrency)."))
    keep_alive_s: int = Field(5, ge=1, description="An idle keep-alive connection is closed after this.")
    header_timeout_s: float = Field(10.0, gt=0, description=(
        "A connection whose request line and headers have not all arrived within this is closed."))
    max_header_bytes: int = Field(64 * 1024, ge=1024, description=(
        "A request line plus headers longer than this gets 431 and the connection is closed."))


class UploadLimits(BaseSettings):
    """What the upload guard enforces for request bodies, in the gateway and the classifier."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    max_inflight_upload_bytes: int = Field(256_000_000, ge=1, description=(
        "Upload bytes being read or held at once. A request that would pass it waits up to "
        "UPLOAD_BUDGET_WAIT_S, then gets 503 `busy` with Retry-After before its body is read."))
    upload_budget_wait_s: float = Field(2.0, ge=0)
    upload_timeout_s: float = Field(30.0, gt=0, description="A body not finished within this gets 408.")
    upload_idle_s: float = Field(10.0, gt=0, description="A body that sends nothing for this long gets 408.")
    linger_s: float = Field(30.0, ge=0, description=(
        "After an early refusal (413, 415, 400, 503 before the body), read and discard the rest of the body "
        "for up to this long after the answer (or until it stalls for UPLOAD_IDLE_S), so that clients "
        "which send it all before reading see the answer."))
    linger_bytes: int = Field(64_000_000, ge=0, description="... and for up to this many bytes.")


class VectorStoreSettings(BaseSettings):
    """Where index versions keep their vectors: read by the indexing job and the similarity service alike."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    vector_store: Literal["faiss", "milvus"] = Field("faiss", description=(
        "`faiss`: one Faiss file per category inside the version, searched in the similarity service's own "
        "memory (nothing to run beside it). `milvus`: the vectors in a Milvus server's collection, for a "
        "catalogue that outgrows one machine."))
    milvus_uri: str = Field("", description=(
        "The Milvus server, e.g. http://127.0.0.1:19530. Unset with VECTOR_STORE=milvus: `make run` starts "
        "a local Milvus standalone (the `milvus` package) and the other programs refuse to start."))
    milvus_token: str = Field("", description="A token (or user:password) for a secured Milvus or Zilliz Cloud.")
    milvus_user: str = Field("", description="User name for a Milvus with authorization enabled.")
    milvus_password: str = Field("", description="That user's password.")
    milvus_timeout_s: float = Field(10.0, gt=0, description=(
        "How long one Milvus call may take before the similarity service answers 503 vector_store_unavailable."))
    milvus_index_type: Literal["FLAT", "HNSW", "IVF_FLAT"] = Field("FLAT", description=(
        "The index Milvus builds per version: FLAT (exact), HNSW or IVF_FLAT; its parameters go into the manifest."))
