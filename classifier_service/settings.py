"""Everything the classifier service reads from the environment, in one place."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from lookalike import settings as shared
from lookalike.contracts import PrecisionSetting
from lookalike.settings import ServiceSettings, UploadLimits


class ClassifierSettings(ServiceSettings):
    """Serve the classifier: a photo in, its embedding and category probabilities out (POST /v1/classify)."""

    model_config = SettingsConfigDict(env_prefix="CLASSIFIER_", extra="ignore", env_ignore_empty=True)

    port: int = Field(8001, description="Port to listen on; the gateway finds it as CLASSIFIER_PORT.")
    index: Path = Field(shared.INDEX_ROOT, validation_alias=AliasChoices("CLASSIFIER_INDEX", "INDEX"),
                        description="Index root; the network (fp32 or int8) and category head come from its "
                        "serving version.")
    weights: str = Field(shared.MODEL_WEIGHTS, validation_alias=AliasChoices("CLASSIFIER_WEIGHTS", "WEIGHTS"),
                         description="imagenet, random, auto, or a path to a .pth state dict: the weights the "
                         "index must have been built with (auto: any). The network itself comes from the index.")
    precision: PrecisionSetting = Field(shared.PRECISION, validation_alias=AliasChoices(
        "CLASSIFIER_PRECISION", "PRECISION"), description="auto, fp32 or int8: the serving index version's fp32 "
        "graph, or its quantised one (auto serves it where its gate passed). bf16 runs fp32.")
    max_batch: int = Field(8, ge=1, description="Largest batch: bounds ONNX Runtime's activations (about 100 MB "
                           "at 8), and smaller batches leave room to decode the next ones meanwhile.")
    memory_arena: bool | None = Field(None, description=(
        "ONNX Runtime's CPU memory arena and memory-pattern planning. Unset (default): the arena for the int8 "
        "graph only (8 % faster; its activations are small), and for fp32 neither, so each pass allocates and "
        "frees its own activations and RSS stays flat under load. true or false: both, for either graph. "
        "docs/performance.md measures each."))
    max_wait_ms: float = Field(5.0, ge=0, description=(
        "Longest wait for company in a batch, only while another upload is being decoded."))
    max_queue: int = Field(64, ge=1, description="Requests waiting beyond this get 503 with Retry-After.")
    max_upload_bytes: int = Field(shared.MAX_UPLOAD_BYTES,
                                  validation_alias=AliasChoices("CLASSIFIER_MAX_UPLOAD_BYTES", "MAX_UPLOAD_BYTES"),
                                  description="Largest upload accepted; a larger one gets 413.")
    max_pixels: int = Field(shared.MAX_PIXELS, validation_alias=AliasChoices("CLASSIFIER_MAX_PIXELS", "MAX_PIXELS"),
                            description="Largest image decoded, in pixels: a phone photo fits, a decompression bomb not.")
    upload_limits: UploadLimits = Field(default_factory=UploadLimits, description="MAX_INFLIGHT_UPLOAD_BYTES, "
                                        "UPLOAD_TIMEOUT_S, ...: see lookalike/settings.py.")
    threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0 means the cores this process may use.")
    decode_threads: int = Field(0, ge=0, description="Uploads decoded at once, beside the forward pass; 0 means the cores.")
