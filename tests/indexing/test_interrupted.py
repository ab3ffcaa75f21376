"""A job stopped part-way (Ctrl-C, kill -9, a full disk) leaves the serving index as it was and the cache
valid; the next run picks up what the stopped one had already embedded.

The job runs as a real process (`python -m indexing`), stopped while it is embedding. A full disk is
played by a per-file size limit (RLIMIT_FSIZE): writes past it fail with EFBIG, as they would with
ENOSPC, without needing a tiny file system.
"""

from __future__ import annotations

import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from indexing.build import BuildPlan, build_index
from indexing.cache import CACHE_FILE
from lookalike.catalog.layout import IndexLayout
from lookalike.vision.embedder import Embedder
from tests.indexing.test_incremental import extra_photos, seeded_index
from tests.support import REPO

NEW_PHOTOS = 24


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("random", "fp32")


@pytest.fixture
def serving(small_catalog: Path, built_index: Path, tmp_path: Path, embedder: Embedder) -> tuple[Path, Path, str]:
    """A catalogue with a published version, then 24 new photos that the next run must embed."""
    catalog = tmp_path / "catalog"
    shutil.copytree(small_catalog, catalog)
    root = seeded_index(built_index, tmp_path / "index")
    version = build_index(BuildPlan(catalog, root, embedder=embedder)).version
    for category in ("bed", "chair", "table"):
        for photo in extra_photos(category, NEW_PHOTOS // 3):
            shutil.copy(photo, catalog / category / photo.name)
    return catalog, root, version


def start_job(catalog: Path, root: Path, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[str]:
    def as_at_a_terminal() -> None:
        # A shell starts a background job (`make test &`, a CI runner's) with SIGINT ignored, and the
        # job would inherit that: Ctrl-C is tested as a terminal's foreground job receives it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if preexec_fn is not None:
            preexec_fn()

    return subprocess.Popen(
        [sys.executable, "-m", "indexing", "--catalog", str(catalog), "--index", str(root), "--weights", "random",
         "--precision", "fp32", "--batch-size", "2", "--workers", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_at_a_terminal)


def cached(root: Path) -> int:
    """Photos in the cache so far; -1 while the job holds the database (the waiting loop asks again)."""
    try:
        with sqlite3.connect(f"file:{root / CACHE_FILE}?mode=ro", uri=True, timeout=0.05) as db:
            return db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    except sqlite3.OperationalError:
        return -1


def wait_for_cached(root: Path, job: subprocess.Popen[str], at_least: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while cached(root) < at_least:
        assert job.poll() is None, f"the job ended before it could be stopped: {job.communicate()}"
        assert time.monotonic() < deadline, "the job embedded nothing in time"
        time.sleep(0.05)


def assert_untouched_and_resumable(root: Path, catalog: Path, version: str, embedder: Embedder,
                                   at_least_cached: int = 2) -> None:
    layout = IndexLayout(root)
    assert layout.current().name == version
    assert layout.published() == [version]
    with sqlite3.connect(root / CACHE_FILE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    already = cached(root) - 30
    assert already >= at_least_cached
    summary = build_index(BuildPlan(catalog, root, embedder=embedder))
    assert summary.embedded + summary.reused == 30 + NEW_PHOTOS
    assert summary.reused >= 30 + already and summary.embedded <= NEW_PHOTOS - already
    assert not list(layout.versions.glob(".build-*"))
    assert layout.current().name == summary.version


def test_kill_9_leaves_the_serving_index_and_the_cache_intact(serving: tuple[Path, Path, str],
                                                             embedder: Embedder) -> None:
    catalog, root, version = serving
    job = start_job(catalog, root)
    wait_for_cached(root, job, 32)
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=60)
    assert_untouched_and_resumable(root, catalog, version, embedder)


def test_ctrl_c_stops_cleanly_and_says_the_next_run_resumes(serving: tuple[Path, Path, str],
                                                            embedder: Embedder) -> None:
    catalog, root, version = serving
    job = start_job(catalog, root)
    wait_for_cached(root, job, 32)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 130, f"the job went on to the end (rc {job.returncode}): {err[-2000:]}"
    assert "interrupted: the serving index is untouched" in err and "Traceback" not in err
    assert not list(IndexLayout(root).versions.glob(".build-*"))
    assert_untouched_and_resumable(root, catalog, version, embedder, at_least_cached=0)


def test_a_full_disk_fails_the_run_with_a_message_and_loses_nothing(serving: tuple[Path, Path, str],
                                                                    embedder: Embedder) -> None:
    catalog, root, version = serving
    # Bytes per file: the first large file the job writes is the exported network (about 100 MB), so the
    # disk fills there, before a photo is embedded; the cache's write-ahead log would reach it next.
    limit = 150_000

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    job = start_job(catalog, root, preexec_fn=small_disk)
    _, err = job.communicate(timeout=300)
    assert job.returncode == 1, err
    assert "The serving index is untouched" in err and "Traceback" not in err
    assert not list(IndexLayout(root).versions.glob(".build-*"))
    assert_untouched_and_resumable(root, catalog, version, embedder, at_least_cached=0)
