"""A version's catalogue report: what its indexing run left out and why, machine-readable.

The indexing job writes it into the version beside the manifest (`catalogue_report.json`); the
gateway's staff page reads it (Catalogue health), as Merchant Center lists a feed's item issues.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

REPORT = "catalogue_report.json"


class UnmappedProduct(BaseModel):
    id: str
    values: str = Field(description="Its product_type / google_product_category, which mapped to no category.")


class FailedPhoto(BaseModel):
    product: str
    photo: str = Field(description="The photo's URL or file.")
    reason: str
    product_left_out: bool = Field(description="true: all its photos failed, so the product is not searchable.")


class CatalogueReport(BaseModel):
    source: str = Field(description="The feed's URL or the catalogue folder the run indexed.")
    kind: str = Field(description="`feed` or `folder`.")
    products: int = Field(description="Products indexed.")
    photos: int = Field(description="Photos indexed.")
    unmapped: list[UnmappedProduct] = Field(default_factory=list)
    failed_photos: list[FailedPhoto] = Field(default_factory=list)
    without_photo: list[str] = Field(default_factory=list, description="Products listed with no photo at all.")
    unknown_values: dict[str, dict[str, int]] = Field(default_factory=dict, description=(
        "Per column (availability, condition), values that fit none of the specification's forms, with their "
        "counts; kept verbatim."))


def read_report(version_dir: Path) -> CatalogueReport | None:
    """The version's report; None for a version built before reports (or with an unreadable one)."""
    try:
        return CatalogueReport.model_validate(json.loads((version_dir / REPORT).read_text()))
    except (OSError, ValueError, ValidationError):
        return None
