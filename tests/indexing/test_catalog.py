"""Reading a catalogue folder: categories from folders, products.csv rows, every problem reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from indexing.catalog import default_catalog, derived_id, scan_catalog
from indexing.settings import IndexingSettings


def make_catalog(root: Path, csv_text: str | None = None) -> Path:
    for rel in ["chair/a.jpg", "chair/b.png", "lamp/c.jpg", "lamp/notes.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt"):
            (root / rel).write_text("not a photo")
        else:
            Image.new("RGB", (32, 32)).save(root / rel)
    (root / "stray.jpg").write_bytes(b"")
    (root / "bad name!").mkdir()
    if csv_text is not None:
        (root / "products.csv").write_text(csv_text)
    return root


def test_categories_are_the_folders(tmp_path: Path) -> None:
    scan = scan_catalog(make_catalog(tmp_path))
    assert scan.categories == ["chair", "lamp"]
    assert [e.file for e in scan.entries] == ["chair/a.jpg", "chair/b.png", "lamp/c.jpg"]


def test_images_without_a_row_get_an_id_and_name_from_their_path(tmp_path: Path) -> None:
    entry = scan_catalog(make_catalog(tmp_path)).entries[0]
    assert entry.id == "chair-a" == derived_id("chair/a.jpg")
    assert entry.name == "A"


def test_products_csv_gives_ids_names_and_keeps_extra_columns(tmp_path: Path) -> None:
    csv_text = "id,category,name,file,price,url\np-1,chair,POÄNG armchair,chair/a.jpg,79.00,https://shop/p-1\n"
    entry = scan_catalog(make_catalog(tmp_path, csv_text)).entries[0]
    assert (entry.id, entry.name) == ("p-1", "POÄNG armchair")
    assert entry.extra == {"price": "79.00", "url": "https://shop/p-1"}


def test_problems_are_reported_with_reasons_not_raised(tmp_path: Path) -> None:
    csv_text = ("id,category,name,file\n"
                "dup,chair,A,chair/a.jpg\n"
                "dup,lamp,B,lamp/c.jpg\n"
                "gone,lamp,Gone,lamp/missing.jpg\n")
    scan = scan_catalog(make_catalog(tmp_path, csv_text))
    reasons = {s.file: s.reason for s in scan.skipped}
    assert "not an image" in reasons["lamp/notes.txt"]
    assert "no category" in reasons["stray.jpg"]
    assert "not a usable category" in reasons["bad name!/"]
    assert "id 'dup' is a chair" in reasons["lamp/c.jpg"]
    assert "does not exist" in reasons["lamp/missing.jpg"]


def test_rows_sharing_an_id_are_photos_of_one_product_named_by_its_first_row(tmp_path: Path) -> None:
    csv_text = ("id,category,name,file,price,item_group_id\n"
                "p-1,chair,POÄNG armchair,chair/a.jpg,79,poang\n"
                "p-1,chair,POANG,chair/b.png,89,poang\n")
    scan = scan_catalog(make_catalog(tmp_path, csv_text))
    photos = [e for e in scan.entries if e.id == "p-1"]
    assert [(e.file, e.name, e.extra, e.group) for e in photos] == [
        ("chair/a.jpg", "POÄNG armchair", {"price": "79"}, "poang"),
        ("chair/b.png", "POÄNG armchair", {"price": "79"}, "poang")]
    assert not scan.skipped or all(s.file != "chair/b.png" for s in scan.skipped)
    [note] = scan.disagreements
    assert note.file == "chair/b.png" and "name, price differ from chair/a.jpg" in note.reason


def test_a_folder_only_catalogue_is_one_photo_one_product(tmp_path: Path) -> None:
    scan = scan_catalog(make_catalog(tmp_path))
    assert len({e.id for e in scan.entries}) == len(scan.entries) and all(e.group is None for e in scan.entries)


def test_the_demo_catalogue_stands_in_while_reference_images_is_empty(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / "reference_images").mkdir(parents=True)
    make_catalog(tmp_path / "shared" / "furniture" / "catalog")
    monkeypatch.chdir(repo)
    monkeypatch.delenv("CATALOG", raising=False)
    folder, note = default_catalog(IndexingSettings().catalog)
    assert folder == Path("../shared/furniture/catalog") and "demo catalogue" in (note or "")
    make_catalog(repo / "reference_images")
    assert default_catalog(IndexingSettings().catalog) == (Path("reference_images"), None)
    monkeypatch.setenv("CATALOG", "elsewhere")
    assert default_catalog(IndexingSettings().catalog) == (Path("elsewhere"), None)
