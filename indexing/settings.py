"""Everything the indexing job and the evaluation read from the environment, in one place.

The command line's flags default to these, so `INDEX=... WEIGHTS=random make index` and
`python -m indexing --index ... --weights random` do the same thing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from lookalike import settings as shared
from lookalike.catalog.projection import REDUCE_HELP, Reduction
from lookalike.catalog.text_index import DEFAULT_EXCLUDED
from lookalike.errors import BadReduction


class IndexingSettings(shared.ModelSettings):
    """INDEX, CATALOG, WEIGHTS, PRECISION, TEXT_WEIGHTS and TEXT_EXCLUDE, the int8 gate's INT8_* figures,
    REDUCE and SELF_EVAL_MARGIN."""

    index: Path = shared.INDEX_ROOT
    catalog: Path | None = None
    text_weights: dict[str, float] = Field(default_factory=dict, description=(
        'bm25 weight per searched field, as JSON, e.g. {"name": 10, "colour": 3}; 0 leaves a field out. '
        "Default: name 10, category 5, other text columns 2, imagenet_tags 1."))
    text_exclude: list[str] = Field(default_factory=lambda: sorted(DEFAULT_EXCLUDED), description=(
        'products.csv columns never searched, as JSON, e.g. ["url", "license"].'))
    int8_calibration_images: int = Field(300, ge=1, description="Catalogue photos the int8 ranges are calibrated on.")
    int8_gate_images: int = Field(200, ge=2, description="Other catalogue photos the gate compares fp32 and int8 on.")
    int8_min_cosine: float = Field(0.98, description="Mean fp32-int8 cosine the gate asks for.")
    int8_min_top10_overlap: float = Field(0.9, description="Mean top-10 overlap within category the gate asks for.")
    int8_min_head_agreement: float = Field(0.98, description="Share of equal head decisions the gate asks for.")
    reduce: str = Field("none", description=f"Dimension reduction of the indexed vectors: {REDUCE_HELP}.")
    self_eval_margin: float = Field(0.05, ge=0, le=1, description=(
        "The publish gate: refuse a new version whose self-evaluation recall@10 lies more than this below the "
        "served version's (both on at least 20 judged queries); --force publishes all the same."))

    @field_validator("reduce")
    @classmethod
    def _reduce_understood(cls, value: str) -> str:
        try:
            return str(Reduction.parse(value))
        except BadReduction as exc:
            raise ValueError(str(exc)) from None
