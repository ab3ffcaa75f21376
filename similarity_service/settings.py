"""Everything the similarity service reads from the environment, in one place."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimilaritySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIMILARITY_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8002
    index: Path = Field(Path("var/index"), validation_alias=AliasChoices("SIMILARITY_INDEX", "INDEX"))
    faiss_threads: int = Field(1, ge=1, description="One query at a time needs no OpenMP team.")
