"""What `make run` reads from the environment: where the index is, which weights, which ports."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike import settings as shared


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    index: Path = shared.INDEX_ROOT
    catalog: Path | None = None
    weights: str = shared.MODEL_WEIGHTS
    classifier_port: int = Field(8001, validation_alias="CLASSIFIER_PORT")
    similarity_port: int = Field(8002, validation_alias="SIMILARITY_PORT")
    gateway_port: int = Field(8000, validation_alias="GATEWAY_PORT")
    milvus_port: int = Field(19530, validation_alias="MILVUS_PORT", description=(
        "The port of the local Milvus standalone `make run VECTOR_STORE=milvus` starts when MILVUS_URI is unset."))

    def port(self, service: str) -> int:
        ports = {"classifier": self.classifier_port, "similarity": self.similarity_port, "gateway": self.gateway_port}
        return ports[service]
