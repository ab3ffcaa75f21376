"""The store of classified photos by handle, in process, on a clock the tests move."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.photo_handles import (
    CLASSIFICATION_OVERHEAD_BYTES,
    HANDLE_LENGTH,
    REGIONS_PER_PHOTO,
    PhotoHandleMetrics,
    PhotoHandles,
    handle_for_log,
)
from lookalike.contracts import Box, ClassifyResponse, ModelInfo, encode_embedding
from lookalike.errors import BadPhotoHandle, PhotoExpired
from lookalike.observability import Metrics

EMBEDDING = encode_embedding(np.ones(8, dtype=np.float32))
ENTRY = len(EMBEDDING) + CLASSIFICATION_OVERHEAD_BYTES  # one classification, no photo


def classified(category: str = "chair") -> ClassifyResponse:
    return ClassifyResponse(category=category, confidence=0.9, probabilities={"chair": 0.9, "lamp": 0.1},
                            embedding=EMBEDDING, model=ModelInfo(weights="random", model_id="m"),
                            index_version="v1", timings_ms={})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def store(clock: Clock, *, entries: int = 100, max_bytes: int = 10_000_000, ttl_s: float = 900,
          photo_bytes: int = 1000, metrics: Metrics | None = None) -> PhotoHandles:
    counted = PhotoHandleMetrics(metrics) if metrics else None
    return PhotoHandles(entries, max_bytes, ttl_s, photo_bytes, counted, clock=clock)


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0


def test_a_handle_is_random_url_safe_and_not_derived_from_the_photo(clock: Clock) -> None:
    handles = store(clock)
    first, second = handles.keep(b"photo", None, classified()), handles.keep(b"photo", None, classified())
    assert first != second, "the same photo twice gets two handles"
    assert len(first) == HANDLE_LENGTH and first.replace("-", "").replace("_", "").isalnum()
    assert handles.get(first).classification(None) == classified()


def test_an_entry_expires_a_while_after_its_last_use(clock: Clock) -> None:
    metrics = Metrics()
    handles = store(clock, ttl_s=900, metrics=metrics)
    handle = handles.keep(b"photo", None, classified())
    clock.now += 800
    handles.get(handle)  # used: its 900 s start again
    clock.now += 800
    handles.get(handle)
    clock.now += 901
    with pytest.raises(PhotoExpired):
        handles.get(handle)
    with pytest.raises(PhotoExpired):
        handles.get(handle)  # reused after expiry: still gone
    assert len(handles) == 0 and handles.bytes == 0
    assert sample(metrics, "photo_handle_hits_total") == 2
    assert sample(metrics, "photo_handle_misses_total") == 2
    assert sample(metrics, "photo_handle_evictions_total", {"reason": "expired"}) == 1


def test_the_least_recently_used_entry_goes_when_the_entries_are_full(clock: Clock) -> None:
    metrics = Metrics()
    handles = store(clock, entries=2, metrics=metrics)
    first = handles.keep(b"1", None, classified())
    second = handles.keep(b"2", None, classified())
    handles.get(first)  # first is now the more recently used
    third = handles.keep(b"3", None, classified())
    assert len(handles) == 2
    handles.get(first), handles.get(third)
    with pytest.raises(PhotoExpired):
        handles.get(second)
    assert sample(metrics, "photo_handle_evictions_total", {"reason": "full"}) == 1
    assert sample(metrics, "photo_handles") == 2


def test_the_store_stays_within_its_bytes(clock: Clock) -> None:
    photo = b"x" * 1000
    handles = store(clock, max_bytes=3 * (len(photo) + ENTRY), photo_bytes=len(photo))
    kept = [handles.keep(photo, None, classified()) for _ in range(5)]
    assert handles.bytes <= handles.max_bytes and len(handles) == 3
    for handle in kept[:2]:
        with pytest.raises(PhotoExpired):
            handles.get(handle)
    assert all(handles.get(handle).photo == photo for handle in kept[2:])


def test_a_large_upload_keeps_its_classification_but_not_its_bytes(clock: Clock) -> None:
    handles = store(clock, photo_bytes=100)
    entry = handles.get(handles.keep(b"x" * 101, None, classified()))
    assert entry.photo is None and entry.classification(None) is not None
    assert handles.bytes == ENTRY


def test_regions_are_kept_beside_the_whole_photo_and_bounded(clock: Clock) -> None:
    handles = store(clock)
    handle = handles.keep(b"photo", None, classified())
    boxes = [Box(x0=0, y0=0, x1=0.5 + i / 100, y1=1) for i in range(REGIONS_PER_PHOTO + 1)]
    for box in boxes:
        handles.add_region(handle, box, classified("lamp"))
    entry = handles.get(handle)
    assert len(entry.classified) == REGIONS_PER_PHOTO
    assert entry.classification(boxes[0]) is None and entry.classification(None) is None, "oldest went first"
    assert entry.classification(boxes[-1]) == classified("lamp")
    assert handles.bytes == len(b"photo") + REGIONS_PER_PHOTO * ENTRY


def test_a_region_classified_after_its_entry_went_is_dropped(clock: Clock) -> None:
    handles = store(clock, ttl_s=10)
    handle = handles.keep(b"photo", None, classified())
    handles.forget(handle)
    handles.add_region(handle, Box(x0=0, y0=0, x1=1, y1=0.5), classified())
    assert len(handles) == 0 and handles.bytes == 0


@pytest.mark.parametrize("handle", ["", "short", "a" * (HANDLE_LENGTH + 1), "a" * 5000,
                                    "a" * (HANDLE_LENGTH - 1) + "/", "a" * (HANDLE_LENGTH - 1) + "=",
                                    "../" + "a" * (HANDLE_LENGTH - 3)])
def test_a_malformed_handle_is_refused_without_being_repeated(clock: Clock, handle: str) -> None:
    metrics = Metrics()
    handles = store(clock, metrics=metrics)
    with pytest.raises(BadPhotoHandle) as refused:
        handles.get(handle)
    assert handle not in refused.value.message or not handle
    assert sample(metrics, "photo_handle_misses_total") == 0


def test_a_guessed_handle_is_unknown(clock: Clock) -> None:
    handles = store(clock)
    handles.keep(b"someone else's photo", None, classified())
    with pytest.raises(PhotoExpired):
        handles.get("A" * HANDLE_LENGTH)


def test_a_log_sees_only_the_start_of_a_handle() -> None:
    handle = "abcdefghij" * 4 + "xyz"
    assert handle_for_log(handle) == "abcdef…"


def test_a_handle_keeps_the_version_and_model_it_was_classified_with(clock: Clock) -> None:
    handles = store(clock)
    handle = handles.keep(b"photo", None, classified())
    entry = handles.get(handle)
    assert (entry.index_version, entry.model.model_id) == ("v1", "m")


def test_a_classification_on_a_new_version_replaces_the_old_versions_ones(clock: Clock) -> None:
    handles = store(clock)
    handle = handles.keep(b"photo", None, classified())
    newer = classified("lamp").model_copy(update={"index_version": "v2"})
    handles.add_region(handle, Box.parse("0,0,0.5,0.5"), newer)
    entry = handles.get(handle)
    assert entry.index_version == "v2"
    assert entry.classification(None) is None, "the whole photo's v1 classification is not mixed with v2's"
    assert entry.classification(Box.parse("0,0,0.5,0.5")) == newer
