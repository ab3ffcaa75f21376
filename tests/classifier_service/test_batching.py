"""Micro-batching: concurrent requests share forward passes; an overfull queue is refused, not piled up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from classifier_service.batching import MicroBatcher, power_of_two_sizes
from lookalike.errors import Overloaded, ServiceUnavailable

pytestmark = pytest.mark.anyio


async def test_concurrent_requests_are_gathered_into_batches() -> None:
    threads = set()

    def double(items: Sequence[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        time.sleep(0.02)
        return [2 * i for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(double, max_batch=8, max_wait_ms=20, max_queue=100)
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(16)))
    finally:
        await batcher.stop()
    assert results == [2 * i for i in range(16)]
    assert max(batcher.batch_sizes) > 1 and max(batcher.batch_sizes) <= 8
    assert len(threads) == 1  # one inference thread, however many requests


async def test_a_failing_batch_fails_its_requests_and_the_next_batch_still_runs() -> None:
    calls = 0

    def flaky(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(flaky, max_batch=1, max_wait_ms=0, max_queue=10)
    batcher.start()
    try:
        with pytest.raises(RuntimeError):
            await batcher.submit(1)
        assert await batcher.submit(2) == 2
    finally:
        await batcher.stop()


async def test_past_the_queue_limit_requests_get_503_with_retry_after() -> None:
    release = threading.Event()

    def slow(items: Sequence[int]) -> list[int]:
        release.wait(5)
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(slow, max_batch=1, max_wait_ms=0, max_queue=2)
    batcher.start()
    try:
        waiting = [asyncio.create_task(batcher.submit(0))]
        await asyncio.sleep(0.05)  # 0 is in the forward pass
        waiting += [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.05)  # 1 and 2 wait: the queue is full
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(99)
        assert refused.value.status == 503 and refused.value.headers["Retry-After"]
        release.set()
        assert await asyncio.gather(*waiting) == [0, 1, 2]
    finally:
        release.set()
        await batcher.stop()


async def test_a_lone_request_does_not_wait_for_company() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(list, max_batch=8, max_wait_ms=5_000, max_queue=10)
    batcher.start()
    try:
        started = time.monotonic()
        assert await batcher.submit(7) == 7
        assert time.monotonic() - started < 1  # not the 5 s max_wait
    finally:
        await batcher.stop()


async def test_a_batch_waits_for_a_request_that_is_on_its_way() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(list, max_batch=8, max_wait_ms=5_000, max_queue=10)
    batcher.start()

    async def decoded_later(item: int) -> int:
        with batcher.on_the_way():
            await asyncio.sleep(0.1)  # being decoded
        return await batcher.submit(item)

    try:
        later = asyncio.create_task(decoded_later(2))
        await asyncio.sleep(0.01)
        assert await asyncio.gather(batcher.submit(1), later) == [1, 2]
        assert list(batcher.batch_sizes) == [2]
    finally:
        await batcher.stop()


def test_batch_sizes_are_powers_of_two_and_the_maximum() -> None:
    assert power_of_two_sizes(8) == [1, 2, 4, 8]
    assert power_of_two_sizes(6) == [1, 2, 4, 6]
    assert power_of_two_sizes(1) == [1]


async def test_batches_keep_to_the_allowed_sizes_and_the_rest_go_next() -> None:
    release = threading.Event()

    def held(items: Sequence[int]) -> list[int]:
        release.wait(5)
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(held, max_batch=8, sizes=[1, 2, 4, 8], max_wait_ms=0, max_queue=100)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)  # 0 alone is in the forward pass; 7 more gather meanwhile
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 8)]
        await asyncio.sleep(0.05)
        release.set()
        assert await asyncio.gather(first, *rest) == list(range(8))
        assert list(batcher.batch_sizes) == [1, 4, 2, 1]
    finally:
        release.set()
        await batcher.stop()


async def test_when_the_batching_task_dies_its_requests_fail_at_once_and_it_is_restarted() -> None:
    deaths = 0

    def counted(size: int) -> None:  # runs inside the batching task itself: raising here kills the task
        nonlocal deaths
        if deaths == 0:
            deaths += 1
            raise RuntimeError("a bug in the batching loop")

    batcher: MicroBatcher[int, int] = MicroBatcher(list, max_batch=1, max_wait_ms=0, max_queue=10, on_batch=counted)
    batcher.start()
    try:
        with pytest.raises(ServiceUnavailable):  # at once, not after the gateway's timeout
            await asyncio.wait_for(batcher.submit(1), 5)
        assert await asyncio.wait_for(batcher.submit(2), 5) == 2
        assert batcher.broken is None and len(batcher.deaths) == 1
    finally:
        await batcher.stop()


async def test_a_task_that_keeps_dying_stays_down_and_says_why() -> None:
    def always(size: int) -> None:
        raise RuntimeError("a bug in the batching loop")

    batcher: MicroBatcher[int, int] = MicroBatcher(list, max_batch=1, max_wait_ms=0, max_queue=10, on_batch=always,
                                                   max_restarts=2)
    batcher.start()
    try:
        for n in range(3):
            with pytest.raises(ServiceUnavailable):
                await asyncio.wait_for(batcher.submit(n), 5)
        assert batcher.broken is not None and "died 3 times" in batcher.broken
        with pytest.raises(ServiceUnavailable):
            await asyncio.wait_for(batcher.submit(9), 1)  # refused at once, not queued behind a dead task
    finally:
        await batcher.stop()


async def test_the_classifier_is_not_ready_while_its_batcher_is_down_and_says_why() -> None:
    from types import SimpleNamespace

    from classifier_service.app import readiness

    def always(size: int) -> None:
        raise RuntimeError("a bug in the batching loop")

    batcher: MicroBatcher[int, int] = MicroBatcher(list, max_batch=1, max_wait_ms=0, max_queue=10, on_batch=always,
                                                   max_restarts=0)
    batcher.start()
    try:
        with pytest.raises(ServiceUnavailable):
            await asyncio.wait_for(batcher.submit(1), 5)
    finally:
        await batcher.stop()
    loaded = SimpleNamespace(embedder=SimpleNamespace(info=None), head=SimpleNamespace(categories=["chair"]),
                             manifest=SimpleNamespace(version="v1", int8=None), warnings=())
    classifier = SimpleNamespace(loaded=loaded, not_ready_reason=None)
    ready = await readiness(classifier, batcher)  # a stand-in classifier: the attributes readiness reads
    assert not ready.ready and ready.reason is not None and "micro-batcher died" in ready.reason
