"""Photos already classified, kept for a while under an opaque handle, so steering a search costs no forward pass.

A shopper's photo is searched once, then steered: another category, a filter, words, Refine, a
cutoff. The first search keeps the classifier's answer (and the small photo, for a later region)
under a random handle; later searches name the handle instead of uploading the photo again.

The store lives in memory only (the app's lifespan state), bounded in entries and in bytes; an
entry expires a while after its last use. A handle it doesn't hold (expired, evicted, another
replica's, from before a restart) is `PhotoExpired`: the client sends the photo again. An entry
keeps the index version and the model its classifications came from: a classification from another
version is a new start (the old ones are dropped), and a handle whose model no longer serves is
`PhotoExpired` too, since its embedding means nothing to the new index. Handles
are 256 random bits (`secrets.token_urlsafe`), not derived from the photo, so one can be neither
guessed nor computed from a photo; only their first characters ever reach a log.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge
from starlette.requests import Request

from lookalike.contracts import Box, ClassifyResponse, ModelInfo
from lookalike.errors import BadPhotoHandle, PhotoExpired, PhotoWithHandle
from lookalike.observability import Metrics

log = logging.getLogger("lookalike.gateway")
HANDLE_BYTES = 32
HANDLE_LENGTH = 43  # len(secrets.token_urlsafe(32))
_HANDLE = re.compile(rf"[A-Za-z0-9_-]{{{HANDLE_LENGTH}}}")
WHOLE_PHOTO = ""
"""The key of the whole photo's classification; a region's key is its `Box` as text."""
REGIONS_PER_PHOTO = 8
"""Classifications one entry keeps (the whole photo and regions), the least recently used dropped first."""
CLASSIFICATION_OVERHEAD_BYTES = 1024
"""Counted for each classification beside its embedding's text: probabilities, model, timings."""


def handle_for_log(handle: str) -> str:
    """The first characters of a handle and an ellipsis: enough to follow one in a log, never enough to use it."""
    return handle[:6] + "…"


def check_handle(handle: str) -> None:
    """BadPhotoHandle for anything that can't be a handle this API hands out; the message never repeats it."""
    if len(handle) > HANDLE_LENGTH:
        raise BadPhotoHandle(f"photo= is {len(handle)} characters long; a photo handle has {HANDLE_LENGTH}. "
                             "Use the `photo` field of an earlier search's answer, or upload the photo.")
    if not _HANDLE.fullmatch(handle):
        raise BadPhotoHandle("photo= is not a photo handle: use the `photo` field of an earlier search's answer, "
                             "or upload the photo.")


def same_model(a: ModelInfo, b: ModelInfo) -> bool:
    """Whether embeddings of the two compare: the same weights and preprocessing (precision aside)."""
    return a.model_id == b.model_id


def refuse_body_with_handle(request: Request) -> None:
    """PhotoWithHandle when a search names a handle and sends a body too: the client must mean one photo."""
    length = request.headers.get("content-length")
    if (length is not None and length != "0") or "transfer-encoding" in request.headers:
        raise PhotoWithHandle("Send either a photo or photo=<handle> of one searched earlier, not both.")


class PhotoHandleMetrics:
    """Hits, misses and evictions of the store, on the gateway's /metrics."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.hits = Counter("photo_handle_hits_total", "Searches that named a photo handle the gateway held.",
                            registry=registry)
        self.misses = Counter("photo_handle_misses_total", "Searches that named a well-formed photo handle the "
                              "gateway did not hold (expired, evicted, another replica's): the client re-sends "
                              "the photo.", registry=registry)
        self.evictions = Counter("photo_handle_evictions_total", "Photo handles dropped: `expired` (unused for "
                                 "GATEWAY_PHOTO_HANDLE_TTL_S) or `full` (to stay within the entry or byte bound).",
                                 ["reason"], registry=registry)
        for reason in ("expired", "full"):
            self.evictions.labels(reason)
        self.entries = Gauge("photo_handles", "Photo handles held now.", registry=registry)
        self.bytes = Gauge("photo_handle_bytes", "Bytes the photo handles hold now (photos and embeddings).",
                           registry=registry)


@dataclass
class StoredPhoto:
    """One photo's classifications (the whole photo, regions), and its bytes if a new region may need them.

    All its classifications come from one index version and one model: `index_version` and `model`.
    """

    photo: bytes | None
    expires_at: float
    index_version: str
    model: ModelInfo
    classified: OrderedDict[str, ClassifyResponse] = field(default_factory=OrderedDict)

    def classification(self, box: Box | None) -> ClassifyResponse | None:
        """The photo's (or the region's) classification if this entry holds it."""
        key = region_key(box)
        found = self.classified.get(key)
        if found is not None:
            self.classified.move_to_end(key)
        return found

    @property
    def size(self) -> int:
        return (len(self.photo or b"")
                + sum(len(c.embedding) + CLASSIFICATION_OVERHEAD_BYTES for c in self.classified.values()))


def region_key(box: Box | None) -> str:
    return str(box) if box is not None else WHOLE_PHOTO


class PhotoHandles:
    """Classified photos by handle, least recently used evicted first, each expiring `ttl_s` after its last use.

    All methods are synchronous and the gateway calls them on its event loop, so no lock is needed.
    """

    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float, max_photo_bytes: int,
                 metrics: PhotoHandleMetrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """`max_photo_bytes`: a larger upload is kept without its bytes, so a new region of it needs it again."""
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.max_photo_bytes = max_photo_bytes
        self.metrics = metrics or PhotoHandleMetrics(Metrics())  # unscraped
        self.clock = clock
        self._entries: OrderedDict[str, StoredPhoto] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def keep(self, photo: bytes, box: Box | None, classified: ClassifyResponse) -> str:
        """A new handle for a photo just classified (the whole of it, or the `box` region)."""
        handle = secrets.token_urlsafe(HANDLE_BYTES)
        entry = StoredPhoto(photo if len(photo) <= self.max_photo_bytes else None, self.clock() + self.ttl_s,
                            classified.index_version, classified.model)
        entry.classified[region_key(box)] = classified
        if entry.size > self.max_bytes:
            entry.photo = None  # too big to keep beside the others: the classification alone still steers
        self._entries[handle] = entry
        self.bytes += entry.size
        self._shrink()
        return handle

    def get(self, handle: str) -> StoredPhoto:
        """The entry, its expiry pushed back; BadPhotoHandle for a malformed handle, PhotoExpired for an unknown one."""
        check_handle(handle)
        self._drop_expired()
        entry = self._entries.get(handle)
        if entry is None:
            self.metrics.misses.inc()
            log.info("photo handle %s is not held here", handle_for_log(handle))
            raise PhotoExpired("This photo is no longer held by the server (it expired, or another server "
                               "answered). Please send the photo again.")
        self.metrics.hits.inc()
        entry.expires_at = self.clock() + self.ttl_s
        self._entries.move_to_end(handle)
        return entry

    def add_region(self, handle: str, box: Box | None, classified: ClassifyResponse) -> None:
        """Remember the classification of a region (or of the whole photo) classified after the first search."""
        entry = self._entries.get(handle)
        if entry is None:
            return  # evicted while the classifier worked: the answer stands, the next search re-sends
        self._entries.move_to_end(handle)
        self.bytes -= entry.size
        if classified.index_version != entry.index_version or not same_model(classified.model, entry.model):
            entry.classified.clear()  # from the version that served before: never mixed with the new one's
            entry.index_version, entry.model = classified.index_version, classified.model
        entry.classified[region_key(box)] = classified
        entry.classified.move_to_end(region_key(box))
        while len(entry.classified) > REGIONS_PER_PHOTO:
            entry.classified.popitem(last=False)
        self.bytes += entry.size
        self._shrink()

    def forget(self, handle: str) -> None:
        entry = self._entries.pop(handle, None)
        if entry is not None:
            self.bytes -= entry.size
        self._count()

    def _count(self) -> None:
        self.metrics.entries.set(len(self._entries))
        self.metrics.bytes.set(self.bytes)

    def _drop_expired(self) -> None:
        """Entries are in order of last use and share one lifetime, so the expired ones are at the front."""
        now = self.clock()
        while self._entries:
            handle, entry = next(iter(self._entries.items()))
            if entry.expires_at > now:
                break
            self.forget(handle)
            self.metrics.evictions.labels("expired").inc()

    def _shrink(self) -> None:
        """Within the bounds again: expired entries first, then the least recently used (never the one just used)."""
        self._drop_expired()
        while (len(self._entries) > self.max_entries or self.bytes > self.max_bytes) and len(self._entries) > 1:
            handle = next(iter(self._entries))  # the entry just used is last: with len > 1, never this one
            self.forget(handle)
            self.metrics.evictions.labels("full").inc()
        self._count()
