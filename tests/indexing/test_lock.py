"""One indexing job per index root: a second one is refused at once, and the lock goes with its holder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexing.lock import LOCK_FILE, exclusive
from lookalike.errors import IndexBusy


def test_a_second_job_on_the_same_root_is_refused_and_names_the_holder(tmp_path: Path) -> None:
    with exclusive(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(IndexBusy, match=f"pid {os.getpid()}"), exclusive(tmp_path):
            pass


def test_the_root_is_free_again_once_the_job_ends(tmp_path: Path) -> None:
    with exclusive(tmp_path):
        pass
    with exclusive(tmp_path):
        pass


def test_jobs_on_different_roots_do_not_wait_for_each_other(tmp_path: Path) -> None:
    with exclusive(tmp_path / "a"), exclusive(tmp_path / "b"):
        pass


def test_the_root_is_created_when_missing(tmp_path: Path) -> None:
    with exclusive(tmp_path / "new" / "index"):
        assert (tmp_path / "new" / "index" / LOCK_FILE).is_file()
