"""REDUCE=pca:64 end to end: the version's indexes hold 64-d vectors, and every search still works.

A real catalogue of 70 photos (14 per category, with their real variant groups and a `price`
column this test adds), indexed with `random` weights and pca:64, served by three real
processes. The similarity service projects each query embedding with the version's own
projection; these tests check that searches, filters, groups, the cutoff, refinement and "more
like this" survive the reduction, and that a projection file other than the manifest's is refused.
With random weights they test the harness, not the model.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.catalog.projection import PROJECTION, Projection, Reduction
from lookalike.errors import ProjectionMismatch, WrongDimension
from tests.support import Services, demo_rows, write_catalog

PER_CATEGORY = 14
DIM = 64


@pytest.fixture(scope="module")
def catalog(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = demo_rows(shared)
    kept = [{**row, "price": str(100 * (n + 1))} for category in ["bed", "chair", "lamp", "sofa", "table"]
            for n, row in enumerate([r for r in rows if r["category"] == category][:PER_CATEGORY])]
    return write_catalog(shared, tmp_path_factory.mktemp("reduced-catalog"), kept)


@pytest.fixture(scope="module")
def index(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from indexing.build import BuildPlan, build_index

    root = tmp_path_factory.mktemp("reduced-index")
    summary = build_index(BuildPlan(catalog, root, "random", precision="fp32", reduce=f"pca:{DIM}"))
    assert summary.reduce == f"pca:{DIM}" and summary.index_dim == DIM
    return root


@pytest.fixture(scope="module")
def stack(index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with Services(index, tmp_path_factory.mktemp("reduced-logs")).running(
            env={"classifier": {"CLASSIFIER_MAX_BATCH": "1"}}, ready=()) as services:
        services.wait_ready("gateway", timeout_s=600)
        yield services


def rows_of(catalog: Path, category: str) -> list[dict[str, str]]:
    with open(catalog / "products.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["category"] == category]


def search(stack: Services, photo: Path, **params: Any) -> list[dict[str, Any]]:
    response = httpx.post(f"{stack.gateway}/api/v1/search", params={"category": "chair", "k": 8, **params},
                          files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}, timeout=120)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    groups = [r["group_id"] for r in results]
    assert len(groups) == len(set(groups)), f"a variant group repeats: {groups}"
    return results


def test_a_pca_64_version_holds_64_d_indexes_and_its_projection(index: Path) -> None:
    version = IndexLayout(index).require_current()
    manifest = read_manifest(version)
    assert manifest.projection is not None and manifest.projection.reduce == f"pca:{DIM}"
    assert manifest.embedding_dim == 2048 and manifest.index_dim == DIM and manifest.projection.learned_on == 70
    catalog = CatalogIndex.load(version)
    assert {name: index.dim for name, index in catalog.categories.items()} == dict.fromkeys(catalog.categories, DIM)
    assert manifest.self_eval is not None and manifest.self_eval.reduce == f"pca:{DIM}"
    with pytest.raises(WrongDimension, match="2048-d"):  # a vector already projected is not a query
        catalog.query_vector(np.ones(DIM, np.float32))


def test_a_catalogue_photo_uploaded_finds_itself_first(stack: Services, catalog: Path) -> None:
    row = rows_of(catalog, "chair")[5]
    found = search(stack, catalog / row["file"])
    # Not cos 1.0: the upload is decoded at another JPEG draft scale than the job's, and centring the
    # random embeddings (all within cos 0.998) magnifies that difference. Still itself, first.
    assert found[0]["id"] == row["id"] and found[0]["score"] > found[1]["score"]
    assert found[0]["score"] == pytest.approx(1.0, abs=0.01)


def test_variant_groups_come_back_once(stack: Services, catalog: Path) -> None:
    rows = rows_of(catalog, "chair")
    grouped = [r for r in rows if r["item_group_id"]]
    groups = {r["item_group_id"] for r in grouped}
    found = search(stack, catalog / rows[0]["file"], k=PER_CATEGORY)
    assert len(found) == len({r["item_group_id"] or r["id"] for r in rows})  # every group, once
    assert groups <= {r["group_id"] for r in found}


def test_filters_and_min_score_still_apply(stack: Services, catalog: Path) -> None:
    photo = catalog / rows_of(catalog, "chair")[0]["file"]
    cheap = search(stack, photo, where="price<=500")
    assert cheap and all(int(r["extra"]["price"]) <= 500 for r in cheap)
    plain = search(stack, photo)
    cutoff = (plain[2]["score"] + plain[3]["score"]) / 2
    close = search(stack, photo, min_score=cutoff)
    assert [r["id"] for r in close] == [r["id"] for r in plain[:3]]


def test_refinement_and_more_like_this_search_the_reduced_space(stack: Services, catalog: Path) -> None:
    photo = catalog / rows_of(catalog, "chair")[0]["file"]
    plain = [r["id"] for r in search(stack, photo)]
    refined = [r["id"] for r in search(stack, photo, like=plain[-1], unlike=plain[0])]
    assert plain[0] not in refined and refined.index(plain[-1]) < plain.index(plain[-1])
    words = httpx.get(f"{stack.gateway}/api/v1/search/text", params={"q": "chair", "k": 5, "like": plain[1]},
                      timeout=60)
    assert words.status_code == 200 and words.json()["refined"] is True, words.text
    similar = httpx.get(f"{stack.gateway}/api/v1/items/{plain[1]}/similar", params={"k": 5}, timeout=60)
    assert similar.status_code == 200, similar.text
    assert plain[1] not in [r["id"] for r in similar.json()["results"]] and similar.json()["results"]


def test_a_projection_other_than_the_manifests_is_refused(index: Path, tmp_path: Path) -> None:
    root = tmp_path / "tampered"
    shutil.copytree(index, root, symlinks=True)
    version = IndexLayout(root).require_current()
    rng = np.random.default_rng(1)
    Projection.learn(rng.normal(size=(100, 2048)).astype(np.float32), Reduction.parse(f"pca:{DIM}")).save(
        version / PROJECTION)  # same shape, another space
    with pytest.raises(ProjectionMismatch, match="sha256"):
        CatalogIndex.load(version)
    with Services(root, tmp_path).running(["similarity"], ready=(), alive=["similarity"]) as services:
        ready = httpx.get(services.url("similarity") + "/readyz", timeout=30)
        assert ready.status_code == 503
        assert "not the projection the version's vectors were made with" in ready.text
