"""`python -m evaluation.photos`: the harness checked with known answers, since random weights know nothing.

The query set made of the catalogue's own images has a known answer: each image is its own
nearest item, so product recall@1 is 1 wherever the search covers the image's category.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import resnet50

from evaluation.photos import main
from tests.support import write_csv

REPORT_KEYS = {"queries", "category_accuracy", "precision@1", "precision@5", "precision@10",
               "product_recall@1", "product_recall@10", "confusion", "time_per_query_ms", "configurations"}


def write_query_set(folder: Path, rows: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "labels.csv", rows, ["file", "category", "product_id"])
    return folder


@pytest.fixture(scope="module")
def own_images(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two catalogue images per category as queries, each naming its own product id (once among others)."""
    folder = tmp_path_factory.mktemp("own-images")
    with open(small_catalog / "products.csv", newline="") as fh:
        products = list(csv.DictReader(fh))
    rows = []
    for category in ["bed", "chair", "lamp", "sofa", "table"]:
        for product in [p for p in products if p["category"] == category][:2]:
            (folder / category).mkdir(exist_ok=True)
            shutil.copy(small_catalog / product["file"], folder / product["file"])
            ids = product["id"] if rows else f"not-in-the-catalogue|{product['id']}"
            rows.append({"file": product["file"], "category": category, "product_id": ids})
    return write_query_set(folder, rows)


@pytest.fixture(scope="module")
def every_configuration(built_index: Path, own_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run over fp32/bf16 × centre crop/pad × flat/PCA-whitened, hedging at 0 (never) and 1.01 (always)."""
    out = tmp_path_factory.mktemp("eval-out")
    assert main(["--index", str(built_index), "--queries", str(own_images), "--out", str(out),
                 "--weights", "random", "--hedge-below", "0,0.5,1.01", "--sheet-queries", "6",
                 "--timed-queries", "2"]) == 0
    return out


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_the_report_has_the_keys_a_search_team_reads(every_configuration: Path) -> None:
    body = report(every_configuration)
    assert REPORT_KEYS <= set(body)
    assert body["queries"] == 10 and body["queries_with_product_ids"] == 10
    assert body["weights"] == "random" and "RANDOM WEIGHTS" in body["warning"]
    assert body["baseline"] == "fp32 center-crop flat"
    assert set(body["time_per_query_ms"]) == {"decode", "embed_and_classify", "search", "total", "timed_queries"}


def test_the_catalogues_own_images_find_themselves_first(every_configuration: Path) -> None:
    body = report(every_configuration)
    assert body["product_recall@1"] == body["category_accuracy"]  # found first exactly when the category is right
    for configuration in body["configurations"]:
        assert configuration["ungated"]["product_recall@1"] == 1.0, configuration["name"]
        assert configuration["ungated"]["precision@1"] == 1.0, configuration["name"]
        gated = configuration["gated"]
        assert gated["product_recall@1"] == pytest.approx(configuration["category_accuracy"]), configuration["name"]


def test_eight_configurations_stand_side_by_side(every_configuration: Path) -> None:
    configurations = report(every_configuration)["configurations"]
    names = [c["name"] for c in configurations]
    assert len(set(names)) == 8
    assert {(c["precision"], c["preprocessing"]) for c in configurations} == {
        ("fp32", "center-crop"), ("fp32", "pad"), ("bf16", "center-crop"), ("bf16", "pad")}
    sources = {c["name"]: c["catalog"] for c in configurations}
    assert sources["fp32 center-crop flat"] == "stored index"
    assert all(sources[n].startswith("re-embedded") for n in names if not n.startswith("fp32 center-crop"))
    assert "PCA-whitened" in next(c["index"] for c in configurations if c["name"] == "fp32 center-crop pcaw")
    table = (every_configuration / "report.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    assert "RANDOM WEIGHTS" in table and "## Confusion matrix" in table


def test_hedging_at_zero_changes_nothing_and_above_one_always_hedges(every_configuration: Path) -> None:
    for configuration in report(every_configuration)["configurations"]:
        never, _, always = configuration["hedged"]
        assert never["hedge_below"] == 0 and never["hedged_share"] == 0
        assert {k: never[k] for k in configuration["gated"]} == configuration["gated"]
        assert always["hedged_share"] == 1.0
        assert always["product_recall@10"] >= configuration["gated"]["product_recall@10"]


def test_the_confusion_matrix_counts_every_query(every_configuration: Path) -> None:
    confusion = report(every_configuration)["confusion"]
    assert confusion["labels"] == ["bed", "chair", "lamp", "sofa", "table"]
    rows = confusion["rows_expected_columns_decided"]
    assert [sum(row) for row in rows] == [2] * 5
    accuracy = sum(rows[i][i] for i in range(5)) / 10
    assert report(every_configuration)["category_accuracy"] == pytest.approx(accuracy)


def test_the_contact_sheet_shows_the_sampled_queries(every_configuration: Path) -> None:
    with Image.open(every_configuration / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG"
        width, height = sheet.size
    assert width > 6 * 150 and height > 6 * 150  # six rows of the query and its top five


def test_queries_without_product_ids_report_null_recall_and_unreadable_ones_are_skipped(
        built_index: Path, query_photos: list[tuple[Path, str]], tmp_path: Path) -> None:
    folder = tmp_path / "queries"
    rows = []
    for photo, category in query_photos[::40]:
        (folder / category).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / category / photo.name)
        rows.append({"file": f"{category}/{photo.name}", "category": category, "product_id": ""})
    (folder / "broken.jpg").write_bytes(b"not a photo")
    write_query_set(folder, rows + [{"file": "broken.jpg", "category": "lamp"},
                                    {"file": "gone.jpg", "category": "bed"}])
    out = tmp_path / "out"
    assert main(["--index", str(built_index), "--queries", str(folder), "--out", str(out), "--weights", "random",
                 "--precisions", "fp32", "--modes", "center-crop", "--indexes", "flat",
                 "--timed-queries", "1"]) == 0
    body = report(out)
    assert body["queries"] == len(rows) and len(body["configurations"]) == 1
    assert body["product_recall@1"] is None and body["product_recall@10"] is None
    assert 0 <= body["precision@10"] <= 1
    assert {s["file"] for s in body["skipped"]} == {"broken.jpg", "gone.jpg"}
    assert "| – | – |" in (out / "report.md").read_text()  # recall@1 and @10 shown as not applicable


def test_a_missing_index_or_query_set_is_explained(tmp_path: Path, built_index: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--index", str(tmp_path / "none"), "--queries", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "make index" in capsys.readouterr().err
    assert main(["--index", str(built_index), "--queries", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--weights", "random"]) == 2
    assert "labels.csv" in capsys.readouterr().err


def test_weights_other_than_the_index_are_refused(built_index: Path, own_images: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "other.pth"
    torch.save(resnet50(weights=None).state_dict(), weights)
    assert main(["--index", str(built_index), "--queries", str(own_images), "--out", str(tmp_path / "o"),
                 "--weights", str(weights)]) == 2
    assert "Pass the same --weights as the index" in capsys.readouterr().err
