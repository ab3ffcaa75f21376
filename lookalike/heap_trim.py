"""Hand memory freed after a burst of uploads back to the kernel: glibc's `malloc_trim(0)`.

Measured (README, "Bad input, faults, load"): after 300 concurrent 19 MB uploads the gateway's
RSS stayed at its 500 MB peak for good. glibc's free() only gives back the top of the heap, and
the read buffers of hundreds of connections, freed in any order, leave it fragmented; the
dynamic mmap threshold, raised to 19 MB by the first freed body, keeps even large buffers on
the heap. `malloc_trim(0)` releases every free page, wherever it is, in about a millisecond.
MALLOC_ARENA_MAX=2 did not help (the gateway is one thread), and a fixed MALLOC_MMAP_THRESHOLD_
of 64 kB made each socket read an mmap and slowed the flood down by half.

Where the C library has no `malloc_trim` (musl), this does nothing.

`mmap_large_buffers` goes further for the gateway's process: it fixes the mmap threshold at 1 MiB,
so an upload body (read into one growing buffer) lives in its own mapping, grows by `mremap`
without a copy, and is given back the moment it is freed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable

M_MMAP_THRESHOLD = -3  # glibc's mallopt(3) parameter


def _libc_function(name: str) -> Callable[..., int] | None:
    """The C library's function `name`, or None where it has none (musl has no malloc_trim or mallopt)."""
    library = ctypes.util.find_library("c")
    found: Callable[..., int] | None = getattr(ctypes.CDLL(library), name, None) if library else None
    return found


def mmap_large_buffers(threshold_bytes: int = 1 << 20) -> bool:
    """Serve each allocation of `threshold_bytes` or more with its own mmap; False where the C library can't.

    For a process whose large allocations are upload bodies (the gateway), not for one that runs a
    model: PyTorch's activations would then be mapped and unmapped at every forward pass. Measured
    with 300 concurrent 19 MB uploads (tests/gateway/test_floods.py -s, three runs each, AMD EPYC,
    2026-12-06): the gateway's peak RSS 545-706 MiB with glibc's dynamic threshold, 476-532 MiB with
    it fixed at 1 MiB, in the same time (6-7 s). Below 1 MiB (socket reads are 64 kB) malloc is unchanged.
    """
    mallopt = _libc_function("mallopt")
    return bool(mallopt is not None and mallopt(M_MMAP_THRESHOLD, threshold_bytes))


def _malloc_trim() -> Callable[[], object] | None:
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    return lambda: trim(0)  # ctypes releases the GIL for the call


def trim_heap() -> None:
    """Give the heap's free pages back now: a job between phases, once a large model is dropped."""
    trim = _malloc_trim()
    if trim is not None:
        trim()


class HeapTrimmer:
    """Collects garbage and trims the heap once uploads have been quiet for `quiet_s` (or every `every_s` at most).

    Not while they stream in: pages given back are faulted in again by the next reads, which
    costs more than it saves, and the budget bounds the peak anyway. The collection comes first
    because bodies held by reference cycles (an exception's traceback holds the frame that holds
    the upload) would otherwise wait for Python's oldest generation, which may not run for long.
    """

    def __init__(self, quiet_s: float = 1.0, every_s: float = 30.0) -> None:
        self.quiet_s, self.every_s = quiet_s, every_s
        self.trim = _malloc_trim()
        self.trims = 0
        self._last_free = self._last_trim = time.monotonic()
        self._scheduled: asyncio.TimerHandle | None = None

    def freed(self, size: int) -> None:
        """`size` bytes were just given up; call from the event loop."""
        if self.trim is None or not size:
            return
        self._last_free = time.monotonic()
        if self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_later(self.quiet_s, self._trim_when_quiet)

    def _trim_when_quiet(self) -> None:
        assert self.trim is not None
        now = time.monotonic()
        quiet_for = now - self._last_free
        if quiet_for < self.quiet_s and now - self._last_trim < self.every_s:
            self._scheduled = asyncio.get_running_loop().call_later(self.quiet_s - quiet_for, self._trim_when_quiet)
            return
        self._scheduled = None
        gc.collect()
        self.trim()
        self.trims += 1
        self._last_trim = now
