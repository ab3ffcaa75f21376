"""The indexing job: real photos in, a complete version published atomically, a summary out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from indexing.__main__ import format_summary, main
from indexing.build import BuildPlan, build_index
from lookalike.catalog.layout import IndexLayout, read_items, read_manifest
from lookalike.errors import EmptyCatalog
from lookalike.vision.embedder import Embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("random", "fp32")


def test_a_built_index_holds_every_part_the_services_need(built_index: Path, small_catalog: Path) -> None:
    version_dir = IndexLayout(built_index).current()
    assert version_dir is not None
    manifest = read_manifest(version_dir)
    assert manifest.category_names == ["bed", "chair", "lamp", "sofa", "table"]
    assert manifest.model.weights == "random" and manifest.embedding_dim == 2048
    assert manifest.head.cv_accuracy is not None and 0 <= manifest.head.cv_accuracy <= 1
    items = read_items(version_dir)
    assert len(items) == sum(c.items for c in manifest.categories) == 30
    assert all((version_dir / i.thumbnail).stat().st_size > 0 for i in items)
    assert items[0].id.startswith("ikea-") or items[0].id  # ids come from products.csv
    assert (version_dir / "head.npz").is_file()
    assert all((version_dir / "indexes" / f"{c}.faiss").is_file() for c in manifest.category_names)


def test_a_new_build_swaps_current_and_keeps_the_old_version(small_catalog: Path, tmp_path: Path,
                                                            embedder: Embedder) -> None:
    first = build_index(BuildPlan(small_catalog, tmp_path, embedder=embedder))
    second = build_index(BuildPlan(small_catalog, tmp_path, embedder=embedder))
    layout = IndexLayout(tmp_path)
    assert layout.current() == second.version_dir.resolve()
    assert first.version_dir.is_dir() and first.version != second.version
    assert not [p for p in layout.versions.iterdir() if p.name.startswith(".build")]


def test_a_store_adding_a_folder_gets_a_new_category(small_catalog: Path, tmp_path: Path, embedder: Embedder) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(small_catalog, catalog)
    (catalog / "wardrobe").mkdir()
    for src in sorted((catalog / "table").iterdir())[:3]:
        shutil.copy(src, catalog / "wardrobe" / src.name)
    summary = build_index(BuildPlan(catalog, tmp_path / "index", embedder=embedder))
    assert summary.per_category["wardrobe"] == 3


def test_unreadable_files_are_skipped_with_a_reason(small_catalog: Path, tmp_path: Path, embedder: Embedder) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(small_catalog, catalog)
    (catalog / "chair" / "empty.jpg").write_bytes(b"")
    good = next((catalog / "lamp").iterdir()).read_bytes()
    (catalog / "lamp" / "truncated.jpg").write_bytes(good[: len(good) // 4])
    summary = build_index(BuildPlan(catalog, tmp_path / "index", embedder=embedder))
    reasons = {s.file: s.reason for s in summary.skipped}
    assert "chair/empty.jpg" in reasons and "lamp/truncated.jpg" in reasons
    assert summary.embedded == 30
    assert "Skipped 2" in format_summary(summary)


def test_photos_of_one_product_keep_its_id_and_group_and_rows_that_disagree_are_reported(
        small_catalog: Path, tmp_path: Path, embedder: Embedder) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(small_catalog, catalog)
    lines = (catalog / "products.csv").read_text().splitlines()
    header = lines[0].split(",")
    first, second = (next(i for i, line in enumerate(lines) if ",chair/" in line) + n for n in (0, 1))
    product = lines[first].split(",")[header.index("id")]
    cells = lines[second].split(",")  # a second photo of the first chair, under another name
    lines[second] = ",".join([product, cells[1], "Another name", *cells[3:]])
    (catalog / "products.csv").write_text("\n".join(lines) + "\n")
    summary = build_index(BuildPlan(catalog, tmp_path / "index", embedder=embedder))
    photos = [i for i in read_items(summary.version_dir) if i.id == product]
    assert len(photos) == 2 and len({p.name for p in photos}) == 1 and len({p.group_id for p in photos}) == 1
    assert [d.file for d in summary.disagreements] == [photos[1].file]
    assert "name differ" in summary.disagreements[0].reason
    assert "disagree with their product's first row (1)" in format_summary(summary)


def test_an_empty_catalogue_says_how_to_fill_it(tmp_path: Path) -> None:
    with pytest.raises(EmptyCatalog, match="one folder per category"):
        build_index(BuildPlan(tmp_path, tmp_path / "index", "random"))


def test_the_command_line_prints_a_summary(small_catalog: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--catalog", str(small_catalog), "--index", str(tmp_path), "--weights", "random",
                 "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "Indexed 30 images in 5 categories" in out and "RANDOM WEIGHTS" in out
    assert "chair" in out and "Skipped 0" in out and "Published version" in out
    assert json.loads((IndexLayout(tmp_path).current() / "manifest.json").read_text())["model"]["weights"] == "random"
