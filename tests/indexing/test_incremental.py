"""Re-indexing a living catalogue: only new bytes go through the network, versions are kept and rolled back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from indexing.__main__ import format_summary, main
from indexing.build import BuildPlan, build_index
from indexing.cache import CACHE_FILE, EmbeddingCache
from indexing.lock import exclusive
from indexing.versions import prune_versions, rollback
from lookalike.catalog.layout import IndexLayout, read_items, read_manifest
from lookalike.errors import IndexBusy
from lookalike.vision.embedder import Embedder
from tests.support import SHARED


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("random", "fp32")


def seeded_index(built_index: Path, root: Path) -> Path:
    """An index root whose cache already holds the small catalogue's embeddings (from the session's build)."""
    root.mkdir(parents=True)
    for name in (CACHE_FILE, CACHE_FILE + "-wal"):
        if (built_index / name).exists():
            shutil.copy(built_index / name, root / name)
    return root


def extra_photos(category: str, count: int, skip: int = 6) -> list[Path]:
    """Real photos of a category beyond the ones in the small catalogue."""
    return sorted((SHARED / "catalog" / category).glob("*.jpg"))[skip:skip + count]


@pytest.fixture
def catalog(small_catalog: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "catalog"
    shutil.copytree(small_catalog, copy)
    return copy


def test_a_rebuild_of_an_unchanged_catalogue_embeds_nothing(catalog: Path, built_index: Path, tmp_path: Path,
                                                            embedder: Embedder) -> None:
    summary = build_index(BuildPlan(catalog, seeded_index(built_index, tmp_path / "index"), embedder=embedder))
    assert summary.changes == "embedded 0, reused 30, removed 0"
    assert summary.indexed == 30


def test_added_photos_are_the_only_ones_embedded(catalog: Path, built_index: Path, tmp_path: Path,
                                                 embedder: Embedder) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    build_index(BuildPlan(catalog, root, embedder=embedder))
    for photo in extra_photos("chair", 3):
        shutil.copy(photo, catalog / "chair" / photo.name)
    summary = build_index(BuildPlan(catalog, root, embedder=embedder))
    assert summary.changes == "embedded 3, reused 30, removed 0"
    assert "embedded 3, reused 30, removed 0" in format_summary(summary).splitlines()
    assert len(EmbeddingCache(root / CACHE_FILE, embedder.info.model_id)) == 33


def test_changed_bytes_are_embedded_again_deleted_files_leave_and_renamed_files_reuse(
        catalog: Path, built_index: Path, tmp_path: Path, embedder: Embedder) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    before = read_items(build_index(BuildPlan(catalog, root, embedder=embedder)).version_dir)
    changed, deleted, renamed = sorted((catalog / "sofa").glob("*.jpg"))[:3]
    with Image.open(changed) as img:
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed, "JPEG")
    deleted.unlink()
    renamed.rename(renamed.with_name("renamed-sofa.jpg"))

    summary = build_index(BuildPlan(catalog, root, embedder=embedder))

    assert summary.changes == "embedded 1, reused 28, removed 2"
    after = read_items(summary.version_dir)
    files = {i.file for i in after}
    assert f"sofa/{deleted.name}" not in files
    assert "sofa/renamed-sofa.jpg" in files and f"sofa/{renamed.name}" not in files
    old_hash = {i.file: i.sha256 for i in before}
    new_hash = {i.file: i.sha256 for i in after}
    assert new_hash["sofa/renamed-sofa.jpg"] == old_hash[f"sofa/{renamed.name}"]
    assert new_hash[f"sofa/{changed.name}"] != old_hash[f"sofa/{changed.name}"]


def test_the_cache_forgets_photos_that_left_the_catalogue(catalog: Path, built_index: Path, tmp_path: Path,
                                                          embedder: Embedder) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    for photo in sorted((catalog / "lamp").iterdir())[:2]:
        photo.unlink()
    build_index(BuildPlan(catalog, root, embedder=embedder))
    assert len(EmbeddingCache(root / CACHE_FILE, embedder.info.model_id)) == 28


def test_a_second_job_on_the_same_index_is_refused_while_one_runs(catalog: Path, tmp_path: Path,
                                                                 embedder: Embedder,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "index"
    with exclusive(root):
        with pytest.raises(IndexBusy, match="Another indexing job"):
            build_index(BuildPlan(catalog, root, embedder=embedder))
        assert main(["--catalog", str(catalog), "--index", str(root), "--weights", "random"]) == 2
    assert "Another indexing job" in capsys.readouterr().err
    assert IndexLayout(root).current() is None


def test_keep_deletes_old_versions_but_never_the_serving_one(catalog: Path, built_index: Path, tmp_path: Path,
                                                             embedder: Embedder) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    layout = IndexLayout(root)
    versions = [build_index(BuildPlan(catalog, root, embedder=embedder, keep=2)).version for _ in range(2)]
    assert layout.published() == versions
    rollback(root)  # serving the older one again: pruning must spare it, and keep the newest
    assert prune_versions(layout, keep=1) == [] and layout.published() == versions
    newest = build_index(BuildPlan(catalog, root, embedder=embedder, keep=1)).version
    assert layout.published() == [newest] and layout.current().name == newest
    assert not (layout.versions / versions[0]).exists() and not (layout.versions / versions[1]).exists()


def test_rolling_back_is_one_command_and_rolling_forward_is_another(catalog: Path, built_index: Path,
                                                                    tmp_path: Path, embedder: Embedder,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    first = build_index(BuildPlan(catalog, root, embedder=embedder)).version
    second = build_index(BuildPlan(catalog, root, embedder=embedder)).version
    layout = IndexLayout(root)

    assert main(["rollback", "--index", str(root)]) == 0
    assert layout.current().name == first
    assert f"Rolled back from {second} to {first}" in capsys.readouterr().out
    assert main(["rollback", "--index", str(root)]) == 2
    assert "nothing to roll back to" in capsys.readouterr().err

    assert main(["rollback", "--index", str(root), "--to", second]) == 0
    assert layout.current().name == second
    assert main(["versions", "--index", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()[-2:]
    assert lines[0].startswith(f"  {first}  ") and lines[1].startswith(f"* {second}  ")
    assert all("Self-evaluation" in line and "reduce=none" in line for line in lines)
    assert main(["rollback", "--index", str(root), "--to", "19990101T000000Z-000000"]) == 2
    assert "Versions kept" in capsys.readouterr().err


def test_the_index_type_is_chosen_per_catalogue_and_recorded(catalog: Path, built_index: Path, tmp_path: Path,
                                                             embedder: Embedder) -> None:
    summary = build_index(BuildPlan(catalog, seeded_index(built_index, tmp_path / "index"), embedder=embedder,
                          index_type="HNSW32"))
    manifest = read_manifest(summary.version_dir)
    assert manifest.index_type == "HNSW32"
    assert {c.index_type for c in manifest.categories} == {"HNSW32"}
    assert all(c.search_parameters == {"efSearch": 64} for c in manifest.categories)

