"""Everything the similarity service reads from the environment, in one place."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike import settings as shared


class SimilaritySettings(BaseSettings):
    """Serve the similarity search: Faiss per category and the text index, over the serving index version."""

    model_config = SettingsConfigDict(env_prefix="SIMILARITY_", extra="ignore", env_ignore_empty=True)

    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 for every interface.")
    port: int = Field(8002, description="Port to listen on.")
    index: Path = Field(shared.INDEX_ROOT, validation_alias=AliasChoices("SIMILARITY_INDEX", "INDEX"),
                        description="Index root; its `current` version is served, and reloaded on POST /v1/reload.")
    faiss_threads: int = Field(1, ge=1, description="One query at a time needs no OpenMP team.")
    rocchio_alpha: float = Field(1.0, ge=0, description="Refining: weight of the original query.")
    rocchio_beta: float = Field(0.75, ge=0, description="Refining: weight of the liked products' mean vector.")
    rocchio_gamma: float = Field(0.25, ge=0, description="Refining: weight of the unliked products' mean, subtracted.")
