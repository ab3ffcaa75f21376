"""Everything the gateway reads from the environment, in one place."""

from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8000
    classifier_port: int = Field(8001, validation_alias="CLASSIFIER_PORT")
    similarity_port: int = Field(8002, validation_alias="SIMILARITY_PORT")
    classifier_url: str = Field("", validation_alias=AliasChoices("GATEWAY_CLASSIFIER_URL", "CLASSIFIER_URL"),
                                description="Defaults to http://127.0.0.1:$CLASSIFIER_PORT")
    similarity_url: str = Field("", validation_alias=AliasChoices("GATEWAY_SIMILARITY_URL", "SIMILARITY_URL"),
                                description="Defaults to http://127.0.0.1:$SIMILARITY_PORT")
    classify_timeout_s: float = Field(15.0, gt=0, description="Covers queueing behind other uploads.")
    search_timeout_s: float = Field(5.0, gt=0)
    hedge_below: float = Field(0.0, ge=0, le=1, description=(
        "When the classifier's top probability is below this, search the top two categories and merge "
        "by score. 0 (the default) never hedges; see README, Measuring quality."))
    replica_refresh_s: float = Field(5.0, gt=0, description="How often service names are resolved again to find "
                                     "replicas; CLASSIFIER_URL and SIMILARITY_URL may also list several, comma-separated.")
    max_upload_bytes: int = Field(20_000_000, validation_alias=AliasChoices("GATEWAY_MAX_UPLOAD_BYTES", "MAX_UPLOAD_BYTES"))
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("GATEWAY_CORS_ALLOW_ORIGINS", "CORS_ALLOW_ORIGINS"),
        description="Comma-separated origins allowed to call the API from a browser; empty (default) means CORS is off.")

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [o.strip() for o in value.split(",") if o.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _default_urls(self) -> "GatewaySettings":
        self.classifier_url = self.classifier_url or f"http://127.0.0.1:{self.classifier_port}"
        self.similarity_url = self.similarity_url or f"http://127.0.0.1:{self.similarity_port}"
        return self
