"""Micro-batching: concurrent requests share one forward pass on a single inference thread.

A forward pass over 4 images costs much less than 4 passes over 1 on a CPU. A batch waits at
most `max_wait_ms` for company, and only while some other request is on its way (being
decoded): a lone shopper's photo goes straight through. Past `max_queue` waiting, new
requests are refused with 503 rather than piling up until every one of them times out.

Batches may be held to a few `sizes`: a fused graph compiles each input shape it meets and keeps
it, packed weights and all, so 1, 2, 4 and 8 cost a quarter of the memory of every size up to 8.
Requests beyond the largest size that fits go first in the next batch.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Generic, TypeVar

from lookalike.errors import Overloaded

Item = TypeVar("Item")
Result = TypeVar("Result")



def power_of_two_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, … up to `max_batch`, and `max_batch` itself."""
    return sorted({*(2 ** i for i in range(max_batch.bit_length()) if 2 ** i <= max_batch), max_batch})


class MicroBatcher(Generic[Item, Result]):
    def __init__(self, run_batch: Callable[[Sequence[Item]], list[Result]], *,
                 max_batch: int, max_wait_ms: float, max_queue: int, sizes: Sequence[int] | None = None,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self._run_batch = run_batch
        self._on_batch = on_batch  # told each batch's size, e.g. by a metrics histogram
        self.max_batch = max_batch
        self.sizes = sorted({1, *(s for s in (sizes or range(1, max_batch + 1)) if 1 <= s <= max_batch)})
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._worker: asyncio.Task[None] | None = None
        self._on_the_way = 0
        self._carried: list[tuple[Item, asyncio.Future[Result]]] = []  # past the last batch's size; go next
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # recent batches, for metrics and tests

    @property
    def queue_length(self) -> int:
        return self._queue.qsize() + len(self._carried)

    @contextmanager
    def on_the_way(self) -> Iterator[None]:
        """Marks a request that will `submit` soon, such as one being decoded: a batch may wait for it."""
        self._on_the_way += 1
        try:
            yield
        finally:
            self._on_the_way -= 1

    async def on_inference_thread(self, work: Callable[[], None]) -> None:
        """Run `work` on the thread that runs the batches, e.g. to warm the model up before `start`."""
        await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._serve(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, item: Item) -> Result:
        if self.queue_length >= self.max_queue:
            raise Overloaded("The server is busy. Please try again in a moment.", headers={"Retry-After": "1"})
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch, self._carried = self._carried or [await self._queue.get()], []
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())  # already here: never a reason to wait
                    continue
                if not self._on_the_way:
                    break  # nobody else is coming: waiting would only add latency
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            size = max(s for s in self.sizes if s <= len(live))
            live, self._carried = live[:size], live[size:]
            self.batch_sizes.append(len(live))
            if self._on_batch:
                self._on_batch(len(live))
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, [item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - any failure is handed to the requests that wait on the batch
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results):
                if not fut.done():
                    fut.set_result(result)
