"""Every version measured on its own products, and the gate that keeps a worse one from shoppers.

The catalogue: 15 chair products of two photos each, both PNGs of one real photo's pixels written
at different compression levels, so their bytes differ and their embeddings are identical. The
twin is then the nearest photo of each photo, whatever the weights: recall@1 is 1.0. Giving the
twins different product ids makes each product's other photo an unrelated one, and the figures
fall. With `random` weights these figures test the harness, not the model.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexing.build import BuildPlan, build_index
from indexing.self_eval import MIN_QUERIES, describe, publish_gate, self_evaluate
from indexing.versions import rollback
from lookalike.catalog.faiss_store import CategoryIndex
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.catalog.manifest import CatalogItem, SelfEval
from lookalike.errors import SelfEvalRegressed
from tests.support import REPO, write_csv

PAIRS = 15


def write_catalog(root: Path, photos: list[Path], *, shuffled: bool = False, pairs: int = PAIRS) -> Path:
    """`pairs` products of two identical-pixel PNGs; `shuffled` gives each twin its neighbour pair's product id."""
    (root / "chair").mkdir(parents=True, exist_ok=True)
    rows = []
    for n in range(pairs):
        for twin, level in ((0, 1), (1, 9)):
            file = f"chair/pair{n:02d}-{twin}.png"
            if not (root / file).exists():
                with Image.open(photos[n]) as image:
                    pixels = image.convert("RGB")
                    pixels.thumbnail((400, 400))
                    pixels.save(root / file, "PNG", compress_level=level)
            product = (n + twin) % pairs if shuffled else n
            rows.append({"id": f"p{product:02d}", "category": "chair", "name": f"Chair {product}", "file": file,
                         "item_group_id": ""})
    for stale in set((root / "chair").iterdir()) - {root / r["file"] for r in rows}:
        stale.unlink()
    write_csv(root / "products.csv", rows)
    return root


@pytest.fixture(scope="module")
def chair_photos(shared: Path) -> list[Path]:
    with open(shared / "catalog" / "products.csv", newline="") as fh:
        return [shared / "catalog" / r["file"] for r in csv.DictReader(fh) if r["category"] == "chair"][:PAIRS]


@pytest.fixture(scope="module")
def index_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One index root for the module, so each build after the first reuses the cached embeddings."""
    return tmp_path_factory.mktemp("self-eval-index")


def build(catalog: Path, root: Path, **options: object) -> SelfEval:
    summary = build_index(BuildPlan(catalog, root, "random", precision="fp32", keep=10, **options))
    assert summary.self_eval is not None
    return summary.self_eval


def test_twin_photos_find_each_other_first(chair_photos: list[Path], index_root: Path,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    result = build(write_catalog(tmp_path_factory.mktemp("twins"), chair_photos), index_root)
    assert result.overall.queries == 2 * PAIRS and result.weights == "random"
    assert result.overall.recall_at_1 == 1.0 and result.overall.recall_at_10 == 1.0
    assert result.per_category["chair"].found_at_1 == 2 * PAIRS
    manifest = read_manifest(IndexLayout(index_root).require_current())
    assert manifest.self_eval == result
    assert "random weights" in describe(result) and "recall@1 1.000" in describe(result)


def test_a_shuffled_catalogue_scores_lower_and_the_gate_keeps_it_out(
        chair_photos: list[Path], index_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    layout = IndexLayout(index_root)
    good = layout.require_current()
    shuffled = write_catalog(tmp_path_factory.mktemp("shuffled"), chair_photos, shuffled=True)
    with pytest.raises(SelfEvalRegressed) as refused:
        build(shuffled, index_root)
    message = str(refused.value)
    assert "recall@10 fell by" in message and "from 1.000" in message and "chair" in message
    assert "--force" in message and "random weights" in message.lower()
    assert layout.require_current() == good and len(layout.published()) == 1  # untouched, nothing left behind

    command = [sys.executable, "-m", "indexing", "--catalog", str(shuffled), "--index", str(index_root),
               "--weights", "random", "--precision", "fp32", "--keep", "10"]
    by_cli = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert by_cli.returncode == 2 and "Not published: recall@10 fell by" in by_cli.stderr
    assert layout.require_current() == good

    forced = subprocess.run([*command, "--force"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert forced.returncode == 0, forced.stderr
    assert "publish gate: FORCED" in forced.stdout and "random weights" in forced.stdout
    result = read_manifest(layout.require_current()).self_eval
    assert layout.require_current() != good and result is not None
    assert result.overall.queries == 2 * PAIRS
    assert result.overall.recall_at_1 == 0.0  # each photo's nearest is its twin, now another product
    assert result.overall.recall_at_10 is not None and result.overall.recall_at_10 < 0.9

    versions = subprocess.run([sys.executable, "-m", "indexing", "versions", "--index", str(index_root)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert versions.returncode == 0
    lines = versions.stdout.splitlines()
    assert "recall@1 1.000, recall@10 1.000 on 30 queries" in lines[0] and lines[1].startswith("*")
    assert all("random weights" in line for line in lines)


def test_fewer_than_20_judged_queries_give_no_figure_and_no_gate(
        chair_photos: list[Path], index_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    layout = IndexLayout(index_root)
    rollback(index_root, layout.published()[0])  # the twins, recall@10 1.0, served again
    few = write_catalog(tmp_path_factory.mktemp("few"), chair_photos, shuffled=True, pairs=9)
    summary = build_index(BuildPlan(few, index_root, "random", precision="fp32", keep=10))
    assert summary.self_eval is not None and summary.self_eval.overall.queries == 18 < MIN_QUERIES
    assert summary.self_eval.overall.recall_at_1 is None and summary.self_eval.overall.recall_at_10 is None
    assert "not enough to judge" in describe(summary.self_eval)
    assert "not applied" in summary.gate and layout.require_current().name == summary.version


def figures_of(at_10: float, queries: int = 40) -> SelfEval:
    from indexing.self_eval import figures

    found = round(at_10 * queries)
    return SelfEval(overall=figures(queries, found, found), per_category={"chair": figures(queries, found, found)},
                    weights="imagenet")


def test_the_gate_allows_a_drop_within_the_margin_and_refuses_one_beyond_it() -> None:
    assert "passed" in publish_gate(figures_of(0.8), figures_of(0.825), "v1", 0.05, force=False)
    with pytest.raises(SelfEvalRegressed, match=r"fell by 0\.100 .* chair 0\.900 -> 0\.800"):
        publish_gate(figures_of(0.8), figures_of(0.9), "v1", 0.05, force=False)
    assert "FORCED" in publish_gate(figures_of(0.8), figures_of(0.9), "v1", 0.05, force=True)
    assert "passed" in publish_gate(figures_of(0.8), figures_of(0.9), "v1", 0.2, force=False)
    assert "not applied" in publish_gate(figures_of(0.1, queries=10), figures_of(0.9), "v1", 0.05, force=False)
    assert "nothing to compare" in publish_gate(figures_of(0.1), None, None, 0.05, force=False)


def test_only_photos_with_a_sibling_in_their_category_are_judged() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[1] = vectors[0]  # product a's two photos
    vectors[3] = vectors[2]  # b and its variant c
    items = [CatalogItem(label=0, id="a", category="chair", name="a", file="0.jpg"),
             CatalogItem(label=1, id="a", category="chair", name="a", file="1.jpg"),
             CatalogItem(label=2, id="b", category="chair", name="b", file="2.jpg", group_id="g"),
             CatalogItem(label=3, id="c", category="chair", name="c", file="3.jpg", group_id="g"),
             CatalogItem(label=4, id="d", category="chair", name="d", file="4.jpg"),
             CatalogItem(label=5, id="e", category="lamp", name="e", file="5.jpg", group_id="g")]
    indexes = {"chair": CategoryIndex.build(vectors[:5], np.arange(5)),
               "lamp": CategoryIndex.build(vectors[5:], np.array([5]))}
    result = self_evaluate(items, vectors, indexes, weights="random")
    assert result.overall.queries == 4 and result.overall.found_at_1 == 4 and "lamp" not in result.per_category
    assert result.overall.recall_at_1 is None  # 4 queries: not enough to judge
