"""The photos a benchmark uploads, made at run time from ../shared and never written to disk.

Catalogue-size photos are the query photos as they are (about 500 px). Phone-size photos are
the same photos upscaled to 12 megapixels (4032×3024, the usual phone sensor) and saved as
JPEG at quality 90, so the classifier pays a phone upload's real decoding cost.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

PHONE_SIZE = (4032, 3024)


def query_files(queries: Path, count: int) -> list[Path]:
    """`count` query photos, spread over the categories (round robin over labels.csv)."""
    with open(queries / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_category: dict[str, list[Path]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(queries / row["file"])
    spread = [files[i] for i in range(max(map(len, by_category.values()))) for files in by_category.values()
              if i < len(files)]
    return spread[:count]


def catalogue_size(files: list[Path]) -> list[bytes]:
    return [f.read_bytes() for f in files]


def phone_size(files: list[Path]) -> list[bytes]:
    """Each photo upscaled to cover 4032×3024 (or 3024×4032 when upright), centre-cropped, JPEG q90."""
    bodies = []
    for f in files:
        with Image.open(f) as opened:
            img = opened.convert("RGB")
            target = PHONE_SIZE if img.width >= img.height else PHONE_SIZE[::-1]
            scale = max(target[0] / img.width, target[1] / img.height)
            big = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
            left, top = (big.width - target[0]) // 2, (big.height - target[1]) // 2
            big = big.crop((left, top, left + target[0], top + target[1]))
        buffer = io.BytesIO()
        big.save(buffer, "JPEG", quality=90)
        bodies.append(buffer.getvalue())
    return bodies
