"""What each evaluation reads from its flags and the environment, one class per command.

Each reads INDEX and WEIGHTS like the indexing job, and its own options under its own prefix
(EVAL_, EVAL_TEXT_, EVAL_FEEDBACK_), so a variable meant for one report never changes another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import BaseSettings, CliVariadicArg, NoDecode, SettingsConfigDict

from lookalike import settings as shared

EvalPrecision = Literal["fp32", "bf16"]
PreprocessingMode = Literal["center-crop", "pad"]
EvalIndexType = Literal["flat", "pcaw"]

INDEX_HELP = "Index root; its serving version is the one evaluated."
DATA = Path(__file__).with_name("data")
DEFAULT_TEXT_QUERIES = [DATA / "text_queries.csv", DATA / "absent_words.csv"]


class ReportSettings(BaseSettings):
    """What every evaluation has: a folder its report goes to."""

    out: Path = Field(Path("var/eval"), description="Where the reports go.")


class PhotoEvalSettings(ReportSettings):
    """Measure photo search like a search team: labelled query photos against the serving index, in process,
    for each precision, preprocessing and index type; writes report.json, report.md and a contact sheet."""

    model_config = SettingsConfigDict(env_prefix="EVAL_", extra="ignore", env_ignore_empty=True)

    index: Path = Field(shared.INDEX_ROOT, validation_alias="INDEX", description=INDEX_HELP)
    weights: str = Field(shared.MODEL_WEIGHTS, validation_alias="WEIGHTS", description=(
        "The index's weights: imagenet, random, auto or a .pth path."))
    queries: Path = Field(Path("../shared/furniture/queries"), description=(
        "Folder with labels.csv (file, category, optional product_id) and the query photos."))
    out: Path = Field(Path("var/eval"), description="Where the reports go.")
    catalog: Path | None = Field(None, description=(
        "Catalogue folder for re-embedding at other precisions and preprocessing; unset: the one the manifest names."))
    precisions: Annotated[tuple[EvalPrecision, ...], NoDecode, BeforeValidator(shared.split_commas)] = Field(
        ("fp32", "bf16"), min_length=1, description="Precisions to evaluate, comma-separated.")
    modes: Annotated[tuple[PreprocessingMode, ...], NoDecode, BeforeValidator(shared.split_commas)] = Field(
        ("center-crop", "pad"), min_length=1, description="Preprocessing modes to evaluate, comma-separated.")
    indexes: Annotated[tuple[EvalIndexType, ...], NoDecode, BeforeValidator(shared.split_commas)] = Field(
        ("flat", "pcaw"), min_length=1, description="Index types to evaluate, comma-separated: flat, pcaw (PCA whitening).")
    hedge_below: Annotated[tuple[float, ...], NoDecode, BeforeValidator(shared.split_commas)] = Field(
        (0.5, 0.7, 0.9), min_length=1, description=(
            "Thresholds to evaluate hedging at, comma-separated: a top probability below one searches the top two."))
    pcaw_dim: int = Field(256, ge=1, description="Dimensions kept by PCA whitening.")
    sheet_queries: int = Field(24, ge=0, description="Queries on the contact sheet.")
    timed_queries: int = Field(10, ge=0, description="Queries timed one at a time, per precision and preprocessing.")
    batch_size: int = Field(16, ge=1, description="Catalogue photos embedded per forward pass.")
    workers: int = Field(2, ge=1, description="Threads decoding catalogue photos.")


class TextEvalSettings(ReportSettings):
    """Measure search by words: precision@1, precision@10 and recall@10 of a query set against the serving
    index's text index, or against a catalogue folder's products.csv (no embedding needed)."""

    model_config = SettingsConfigDict(env_prefix="EVAL_TEXT_", extra="ignore", env_ignore_empty=True)

    index: Path = Field(shared.INDEX_ROOT, validation_alias="INDEX", description=INDEX_HELP)
    queries: CliVariadicArg[list[Path]] = Field(DEFAULT_TEXT_QUERIES, description=(
        "CSVs with query, relevant_ids, relevant_categories and optionally kind (default: the shipped queries "
        "and the absent words)."))
    text_model: str = Field(shared.TEXT_MODEL, validation_alias=AliasChoices("EVAL_TEXT_MODEL", "TEXT_MODEL"),
                            description="The sentence model of the hybrid ranking (as TEXT_MODEL); none: bm25 alone.")
    catalog: Path | None = Field(None, description=(
        "Measure this catalogue's products.csv instead of the serving index; unset: the serving index."))
    out: Path = Field(Path("var/eval"), description="Where text_report.json and text_report.md go.")


class FeedbackEvalSettings(ReportSettings):
    """Simulated shoppers teach words the catalogue lacks ("couch"): p@depth per round, from learnt text
    associations and from Refine, on a view of the serving index; its feedback is untouched."""

    model_config = SettingsConfigDict(env_prefix="EVAL_FEEDBACK_", extra="ignore", env_ignore_empty=True)

    index: Path = Field(shared.INDEX_ROOT, validation_alias="INDEX", description=INDEX_HELP)
    rounds: int = Field(8, ge=1, description="Shoppers per term, one round each.")
    seed: int = Field(0, description="Seed for the browsing shoppers' samples.")
    depth: int = Field(20, ge=1, description="Results a shopper sees: the report's p@depth.")
    out: Path = Field(Path("var/eval"), description="Where feedback_report.json and feedback_report.md go.")
