"""Everything the classifier service reads from the environment, in one place."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClassifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSIFIER_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8001
    index: Path = Field(Path("var/index"), validation_alias=AliasChoices("CLASSIFIER_INDEX", "INDEX"))
    weights: str = Field("auto", validation_alias=AliasChoices("CLASSIFIER_WEIGHTS", "WEIGHTS"),
                         description="imagenet, random, auto, or a path to a .pth state dict")
    precision: str = Field("auto", validation_alias=AliasChoices("CLASSIFIER_PRECISION", "PRECISION"))
    fused: bool = Field(True, description="Run the network through oneDNN Graph on a CPU; false runs eager PyTorch.")
    max_batch: int = Field(8, ge=1, description="Largest batch. On 2 AVX-512 cores the fused model runs 8 as fast "
                           "per image as 16, and smaller batches leave room to decode the next ones meanwhile.")
    max_wait_ms: float = Field(5.0, ge=0)
    max_queue: int = Field(64, ge=1, description="Requests waiting beyond this get 503 with Retry-After.")
    max_upload_bytes: int = Field(20_000_000, validation_alias=AliasChoices("CLASSIFIER_MAX_UPLOAD_BYTES", "MAX_UPLOAD_BYTES"))
    max_pixels: int = Field(60_000_000, validation_alias=AliasChoices("CLASSIFIER_MAX_PIXELS", "MAX_PIXELS"))
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 means the cores this process may use.")
    decode_threads: int = Field(0, ge=0, description="Uploads decoded at once, beside the forward pass; 0 means the cores.")
