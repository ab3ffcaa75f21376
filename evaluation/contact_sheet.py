"""A contact sheet, so a person can look: each query, the decided category, the top results.

One row per query: the photo with its expected and decided category, then the top results
with their scores. A result of another category than expected is outlined in red; a result
that is one of the products the query names is outlined in green.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lookalike.contracts import Hit

CELL = 150
CAPTION = 56
GAP = 10
QUERY_GAP = 24
OUTLINE = 5
HEADER = 64
RED, GREEN, GREY, INK, BACKGROUND = (214, 39, 40), (44, 160, 44), (200, 200, 200), (30, 30, 30), (255, 255, 255)


@dataclass(frozen=True)
class SheetRow:
    query_image: Image.Image
    caption: str
    expected: str
    decided: str
    confidence: float
    products: frozenset[str]
    results: list[tuple[Path, Hit]]  # thumbnail file, hit


def fitted(image: Image.Image) -> Image.Image:
    """The image scaled into a CELL×CELL square on white, whole."""
    image = image.convert("RGB")
    image.thumbnail((CELL, CELL), Image.Resampling.BILINEAR)
    square = Image.new("RGB", (CELL, CELL), BACKGROUND)
    square.paste(image, ((CELL - image.width) // 2, (CELL - image.height) // 2))
    return square


def shortened(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def draw_contact_sheet(rows: list[SheetRow], title: str, warning: str | None) -> Image.Image:
    font = ImageFont.load_default(size=13)
    bold = ImageFont.load_default(size=16)
    columns = 1 + max((len(r.results) for r in rows), default=0)
    width = GAP + columns * (CELL + GAP) + QUERY_GAP
    height = HEADER + len(rows) * (CELL + CAPTION + GAP) + GAP
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, 8), title, fill=INK, font=bold)
    legend = ("left: the query; right: its top results with scores. Red outline: another category than "
              "expected; green: the product the query names.")
    draw.text((GAP, 28), legend, fill=INK, font=font)
    if warning:
        draw.text((GAP, 44), warning, fill=RED, font=font)
    for n, row in enumerate(rows):
        top = HEADER + n * (CELL + CAPTION + GAP)
        sheet.paste(fitted(row.query_image), (GAP, top))
        right = row.decided == row.expected
        draw.text((GAP, top + CELL + 3), shortened(row.caption), fill=INK, font=font)
        draw.text((GAP, top + CELL + 19), f"expected {row.expected}", fill=INK, font=font)
        draw.text((GAP, top + CELL + 35), f"decided {row.decided} {row.confidence:.0%}",
                  fill=GREEN if right else RED, font=font)
        for m, (thumbnail, hit) in enumerate(row.results):
            left = GAP + QUERY_GAP + (m + 1) * (CELL + GAP)
            with Image.open(thumbnail) as image:
                sheet.paste(fitted(image), (left, top))
            colour = GREEN if hit.id in row.products else GREY if hit.category == row.expected else RED
            width_px = 1 if colour == GREY else OUTLINE
            draw.rectangle((left - width_px, top - width_px, left + CELL + width_px - 1, top + CELL + width_px - 1),
                           outline=colour, width=width_px)
            draw.text((left, top + CELL + 3), f"{hit.score:.3f} {hit.category}", fill=INK, font=font)
            draw.text((left, top + CELL + 19), shortened(hit.id), fill=INK, font=font)
    return sheet
