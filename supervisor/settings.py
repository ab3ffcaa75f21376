"""What `make run` (`lookalike run`) reads from its flags and the environment: the index, the weights, the ports."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike import settings as shared


class StackSettings(BaseSettings):
    """One machine's stack: build the index when it is missing, start the three services, stop them together."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    index: Path = Field(shared.INDEX_ROOT, description="Index root, built here first when it has no `current` version.")
    catalog: Path | None = Field(None, description=(
        "Catalogue folder the missing index is built from. Unset: reference_images, else the demo catalogue."))
    weights: str = Field(shared.MODEL_WEIGHTS, description="imagenet, random, auto, or a path to a .pth state dict.")
    classifier_port: int = Field(8001, validation_alias="CLASSIFIER_PORT", description="The classifier's port.")
    similarity_port: int = Field(8002, validation_alias="SIMILARITY_PORT", description="The similarity service's port.")
    gateway_port: int = Field(8000, validation_alias="GATEWAY_PORT", description="The gateway's port: open this one.")
    milvus_port: int = Field(19530, validation_alias="MILVUS_PORT", description=(
        "The port of the local Milvus standalone `lookalike run` starts with VECTOR_STORE=milvus and no MILVUS_URI."))

    def port(self, service: str) -> int:
        ports = {"classifier": self.classifier_port, "similarity": self.similarity_port, "gateway": self.gateway_port}
        return ports[service]
