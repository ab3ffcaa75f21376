"""Everything the indexing job and the evaluation read from the environment, in one place.

The command line's flags default to these, so `INDEX=... WEIGHTS=random make index` and
`python -m indexing --index ... --weights random` do the same thing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from lookalike import settings as shared
from lookalike.catalog.text_index import DEFAULT_EXCLUDED


class IndexingSettings(shared.ModelSettings):
    """INDEX, CATALOG, WEIGHTS, PRECISION, TEXT_WEIGHTS, TEXT_EXCLUDE and TEXT_MODEL, and the int8 gate's INT8_* figures."""

    index: Path = shared.INDEX_ROOT
    catalog: Path | None = None
    text_weights: dict[str, float] = Field(default_factory=dict, description=(
        'bm25 weight per searched field, as JSON, e.g. {"name": 10, "colour": 3}; 0 leaves a field out. '
        "Default: name 10, category 5, other text columns 2, imagenet_tags 1."))
    text_exclude: list[str] = Field(default_factory=lambda: sorted(DEFAULT_EXCLUDED), description=(
        'products.csv columns never searched, as JSON, e.g. ["url", "license"].'))
    text_model: str = Field(shared.TEXT_MODEL, description=shared.TEXT_MODEL_DOC + " Its name and a digest of its "
                            "files go into the manifest; the similarity service must be set to the same model.")
    int8_calibration_images: int = Field(300, ge=1, description="Catalogue photos the int8 ranges are calibrated on.")
    int8_gate_images: int = Field(200, ge=2, description="Other catalogue photos the gate compares fp32 and int8 on.")
    int8_min_cosine: float = Field(0.98, description="Mean fp32-int8 cosine the gate asks for.")
    int8_min_top10_overlap: float = Field(0.9, description="Mean top-10 overlap within category the gate asks for.")
    int8_min_head_agreement: float = Field(0.98, description="Share of equal head decisions the gate asks for.")
