"""Everything the similarity service reads from the environment, in one place."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from lookalike import settings as shared
from lookalike.settings import ServiceSettings


class SimilaritySettings(ServiceSettings):
    """Serve the similarity search: Faiss per category and the text index, over the serving index version."""

    model_config = SettingsConfigDict(env_prefix="SIMILARITY_", extra="ignore", env_ignore_empty=True)

    port: int = Field(8002, description="Port to listen on; the gateway finds it as SIMILARITY_PORT.")
    index: Path = Field(shared.INDEX_ROOT, validation_alias=AliasChoices("SIMILARITY_INDEX", "INDEX"),
                        description="Index root; its `current` version is served, and reloaded on POST /v1/reload.")
    load_retry_s: float = Field(5.0, gt=0, description=(
        "With VECTOR_STORE=milvus and Milvus down at start: how often to try loading the index version again "
        "(in the background; /readyz never starts a load)."))
    faiss_threads: int = Field(1, ge=1, description="One query at a time needs no OpenMP team.")
    rocchio_alpha: float = Field(1.0, ge=0, description="Refining: weight of the original query.")
    rocchio_beta: float = Field(0.75, ge=0, description="Refining: weight of the liked products' mean vector.")
    rocchio_gamma: float = Field(0.25, ge=0, description="Refining: weight of the unliked products' mean, subtracted.")
    text_model: str = Field(shared.TEXT_MODEL, validation_alias=AliasChoices("SIMILARITY_TEXT_MODEL", "TEXT_MODEL"),
                            description=shared.TEXT_MODEL_DOC + " It must be the model the serving version was "
                            "indexed with; a version whose text vectors another model made is refused (see /readyz). "
                            "The service embeds the words with the ONNX copy the version names (no torch, no copy of "
                            "the model itself needed): it checks the model by its files' digest where they are on "
                            "this machine, else by its name.")
    text_model_threads: int = Field(1, ge=1, description="ONNX Runtime threads embedding a query: one short query per "
                                    "request gains nothing from more, and loses much when the cores are busy.")
    text_fusion_k: float = Field(60.0, gt=0, description="Reciprocal rank fusion's k: the larger, the less the very "
                                 "first ranks of either list outweigh the rest.")
    text_fusion_bm25_weight: float = Field(1.0, ge=0, description="Weight of the bm25 list (exact words) in the fusion.")
    text_fusion_meaning_weight: float = Field(1.0, ge=0, description="Weight of the sentence model's list (meaning) "
                                              "in the fusion.")
    text_min_meaning: float = Field(0.0, ge=-1, le=1, description="Least cosine between the words and a product's "
                                    "text for the sentence model to propose the product (0: any nearest).")
    text_fusion_depth: int = Field(40, ge=1, le=1000, description="Products each list proposes to the fusion.")
