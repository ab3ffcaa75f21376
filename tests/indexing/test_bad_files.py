"""Odd files a store really has: each one is decoded correctly or skipped with a reason, and the job goes on.

Every file is made at run time; the 20000×20000 PNG is one bit per pixel, so it costs 50 kB on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexing.__main__ import format_summary
from indexing.build import BuildPlan, BuildSummary, build_index
from lookalike.catalog.health import read_report
from lookalike.catalog.layout import read_items
from lookalike.vision.embedder import Embedder

RED, GREEN, WHITE = (255, 0, 0), (0, 160, 0), (255, 255, 255)


def make_bad_catalog(root: Path, real_photo: Path) -> Path:
    for category in ("chair", "lamp"):
        (root / category).mkdir(parents=True)
    good = real_photo.read_bytes()
    (root / "chair" / "truncated.jpg").write_bytes(good[: len(good) // 4])
    (root / "chair" / "zero-byte.jpg").write_bytes(b"")
    (root / "chair" / "not-an-image.jpg").write_text("Order #1234: 2 chairs, delivery on Tuesday\n")
    Image.new("1", (20000, 20000)).save(root / "lamp" / "huge.png")

    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(root / "chair" / "cmyk.jpg", "JPEG", quality=95)
    Image.new("I;16", (64, 64), 65535).save(root / "chair" / "sixteen-bit.png")
    paletted = Image.new("P", (64, 64), 1)
    paletted.putpalette([0, 0, 0, *GREEN] + [0, 0, 0] * 254)
    paletted.save(root / "lamp" / "paletted.png")
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(root / "lamp" / "alpha.png")  # fully transparent

    # Stored 80×40, red on the left; EXIF orientation 6 says "turn 90° clockwise to view": 40×80, red on top.
    stored = Image.new("RGB", (80, 40), (0, 0, 255))
    stored.paste(RED, (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(root / "lamp" / "exif-rotated.jpg", "JPEG", quality=95, exif=exif)
    return root


@pytest.fixture(scope="module")
def summary(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildSummary:
    root = tmp_path_factory.mktemp("bad")
    catalog = make_bad_catalog(root / "catalog", next((small_catalog / "chair").glob("*.jpg")))
    return build_index(BuildPlan(catalog, root / "index", embedder=Embedder("random", "fp32")))


def thumbnail(summary: BuildSummary, file: str) -> Image.Image:
    item = next(i for i in read_items(summary.version_dir) if i.file == file)
    return Image.open(summary.version_dir / item.thumbnail).convert("RGB")


def close_to(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.all(np.abs(np.array(pixel) - np.array(colour)) <= tolerance))


def test_unreadable_files_are_skipped_each_with_its_own_reason(summary: BuildSummary) -> None:
    reasons = {s.file: s.reason for s in summary.skipped}
    assert "damaged or incomplete" in reasons["chair/truncated.jpg"]
    assert "not an image" in reasons["chair/zero-byte.jpg"] or "damaged" in reasons["chair/zero-byte.jpg"]
    assert "not an image" in reasons["chair/not-an-image.jpg"]
    assert "megapixel" in reasons["lamp/huge.png"]  # too many pixels, not "damaged"
    assert len(reasons) == 4


def test_every_readable_odd_format_is_indexed(summary: BuildSummary) -> None:
    assert summary.indexed == summary.embedded == 5
    assert {i.file for i in read_items(summary.version_dir)} == {
        "chair/cmyk.jpg", "chair/sixteen-bit.png", "lamp/paletted.png", "lamp/alpha.png", "lamp/exif-rotated.jpg"}


def test_colours_survive_cmyk_sixteen_bit_palettes_and_transparency(summary: BuildSummary) -> None:
    assert close_to(thumbnail(summary, "chair/cmyk.jpg").getpixel((32, 32)), RED)
    assert close_to(thumbnail(summary, "chair/sixteen-bit.png").getpixel((32, 32)), WHITE)
    assert close_to(thumbnail(summary, "lamp/paletted.png").getpixel((32, 32)), GREEN)
    assert close_to(thumbnail(summary, "lamp/alpha.png").getpixel((32, 32)), WHITE)  # laid on white


def test_an_exif_rotated_photo_comes_out_upright(summary: BuildSummary) -> None:
    upright = thumbnail(summary, "lamp/exif-rotated.jpg")
    assert upright.size == (40, 80)
    assert close_to(upright.getpixel((20, 10)), RED) and close_to(upright.getpixel((20, 70)), (0, 0, 255))


def test_the_summary_lists_every_skipped_file(summary: BuildSummary) -> None:
    text = format_summary(summary)
    assert "Skipped 4:" in text and "lamp/huge.png" in text and "embedded 5, reused 0, removed 0" in text


def test_the_versions_catalogue_report_lists_every_skipped_photo_and_why(summary: BuildSummary) -> None:
    report = read_report(summary.version_dir)
    assert report is not None and report.kind == "folder" and report.photos == summary.indexed
    assert {(f.photo, f.reason) for f in report.failed_photos} == {(s.file, s.reason) for s in summary.skipped}
    assert all(f.product_left_out for f in report.failed_photos)
