"""ServedVersion: a service swaps what it serves whole, and a failed reload never leaves it with nothing."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from lookalike.catalog.layout import IndexLayout
from lookalike.errors import ApiError, NotReady
from lookalike.served_version import ServedVersion


@dataclass(frozen=True)
class Loaded:
    version: str


def publish(root: Path, name: str) -> None:
    layout = IndexLayout(root)
    build = layout.begin_build()
    (build / "manifest.json").write_text("{}")
    layout.publish(build, name)


def test_without_an_index_it_is_not_ready_and_says_how_to_build_one(tmp_path: Path) -> None:
    served = ServedVersion(tmp_path, lambda d: Loaded(d.name), "similarity")
    with pytest.raises(NotReady):
        served.reload()
    assert "make index" in (served.not_ready_reason or "")
    with pytest.raises(NotReady, match="The similarity service is not ready"):
        served.require()


def test_a_reload_swaps_to_the_current_version_and_reports_the_previous(tmp_path: Path) -> None:
    served = ServedVersion(tmp_path, lambda d: Loaded(d.name), "classifier")
    publish(tmp_path, "v1")
    assert served.reload() == ("v1", None)
    taken = served.require()
    publish(tmp_path, "v2")
    assert served.reload() == ("v2", "v1")
    assert taken.version == "v1" and served.require().version == "v2"  # a request keeps what it took
    assert served.not_ready_reason is None


def test_a_failed_reload_keeps_the_old_version_serving(tmp_path: Path) -> None:
    def load(version_dir: Path) -> Loaded:
        if version_dir.name == "bad":
            raise ApiError("built with other weights", code="index_model_mismatch", status=409)
        return Loaded(version_dir.name)

    served = ServedVersion(tmp_path, load, "classifier")
    publish(tmp_path, "good")
    served.reload()
    publish(tmp_path, "bad")
    with pytest.raises(ApiError):
        served.reload()
    assert served.require().version == "good" and served.not_ready_reason is None


def test_a_failed_first_load_says_why_it_is_not_ready(tmp_path: Path) -> None:
    def load(_: Path) -> Loaded:
        raise ApiError("built with other weights", code="index_model_mismatch", status=409)

    served = ServedVersion(tmp_path, load, "classifier")
    publish(tmp_path, "v1")
    with pytest.raises(ApiError):
        served.reload()
    assert served.not_ready_reason == "built with other weights"


def test_overlapping_reloads_over_a_flipping_current_end_on_the_newest_version(tmp_path: Path) -> None:
    """The race the job's notify can start: a slow load of v1 finishing after a fast one of v2, again and again."""
    for round_ in range(5):
        root = tmp_path / f"round{round_}"
        release_old = threading.Event()

        def load(version_dir: Path, release_old: threading.Event = release_old) -> Loaded:
            if version_dir.name == "v1":
                release_old.wait(timeout=30)  # slow: still loading when v2 is published and reloaded
            return Loaded(version_dir.name)

        served = ServedVersion(root, load, "similarity")
        publish(root, "v1")
        slow = threading.Thread(target=served.reload)
        slow.start()
        publish(root, "v2")
        fast = threading.Thread(target=served.reload)
        fast.start()
        fast.join(timeout=0.2)  # it finishes at once without the lock, or waits for the slow one with it
        release_old.set()
        slow.join()
        fast.join()
        assert served.require().version == "v2"
        assert IndexLayout(root).current() == root / "versions" / "v2"


def test_a_reload_that_finds_current_moved_on_loads_the_new_current(tmp_path: Path) -> None:
    seen: list[str] = []

    def load(version_dir: Path) -> Loaded:
        seen.append(version_dir.name)
        if version_dir.name == "v1":
            publish(tmp_path, "v2")  # the job publishes while v1 loads
        return Loaded(version_dir.name)

    served = ServedVersion(tmp_path, load, "classifier")
    publish(tmp_path, "v1")
    assert served.reload() == ("v2", None)
    assert seen == ["v1", "v2"]


def test_a_rollback_is_current_too(tmp_path: Path) -> None:
    served = ServedVersion(tmp_path, lambda d: Loaded(d.name), "classifier")
    publish(tmp_path, "v1")
    publish(tmp_path, "v2")
    served.reload()
    IndexLayout(tmp_path).point_to("v1")
    assert served.reload() == ("v1", "v2")
