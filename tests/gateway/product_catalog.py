"""The gateway tests' own catalogue (see conftest.py): its shape, its products' photos, and a collage of them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

CHAIRS, LAMPS = 8, 4


def chair_id(n: int) -> str:
    return f"chair-{n}"


def photos_of(catalog: Path, product: str) -> list[Path]:
    with open(catalog / "products.csv", newline="") as fh:
        return [catalog / r["file"] for r in csv.DictReader(fh) if r["id"] == product]


def collage(catalog: Path, products: list[int]) -> tuple[bytes, dict[int, str]]:
    """A 2×2 PNG of the first photos of four chairs, each at its own size, and the `box` around each.

    PNG has no draft mode and the 500×500 catalogue JPEGs decode whole, so a box's pixels are exactly
    the catalogue photo's, and so is its embedding.
    """
    tiles = [Image.open(photos_of(catalog, chair_id(n))[0]).convert("RGB") for n in products]
    side = max(max(t.size) for t in tiles)
    image = Image.new("RGB", (2 * side, 2 * side), (255, 255, 255))
    boxes = {}
    for n, tile, (x, y) in zip(products, tiles, [(0, 0), (side, 0), (0, side), (side, side)]):
        image.paste(tile, (x, y))
        boxes[n] = ",".join(repr(v) for v in (x / image.width, y / image.height,
                                              (x + tile.width) / image.width, (y + tile.height) / image.height))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue(), boxes
