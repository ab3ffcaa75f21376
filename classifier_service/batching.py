"""Micro-batching: concurrent requests share one forward pass on a single inference thread.

A forward pass over 4 images costs much less than 4 passes over 1 on a CPU. A batch waits at
most `max_wait_ms` for company, and only while some other request is on its way (being
decoded): a lone shopper's photo goes straight through. Past `max_queue` waiting, new
requests are refused with 503 rather than piling up until every one of them times out.

Batches may be held to a few `sizes` (1, 2, 4, 8): the classifier warms up each size at start, and
ONNX Runtime's memory-pattern planning, where it is on, keeps a plan and its buffers per input shape
it meets; fewer shapes, less of both.
Requests beyond the largest size that fits go first in the next batch.

Nothing dies quietly: if the batching task itself dies (a bug, not a failed forward pass, which
goes to the requests of its batch), a done-callback logs it, fails the requests of the batch it
held at once (503, none waits out its timeout), and starts it again. Past `max_restarts` deaths in
`restart_window_s` it stays down: every request is refused at once and `broken` says why, which
the classifier's `/readyz` reports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Generic, TypeVar

from lookalike.errors import Overloaded, ServiceUnavailable

Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger("lookalike.classifier.batching")


def power_of_two_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, … up to `max_batch`, and `max_batch` itself."""
    return sorted({*(2 ** i for i in range(max_batch.bit_length()) if 2 ** i <= max_batch), max_batch})


class MicroBatcher(Generic[Item, Result]):
    def __init__(self, run_batch: Callable[[Sequence[Item]], list[Result]], *,
                 max_batch: int, max_wait_ms: float, max_queue: int, sizes: Sequence[int] | None = None,
                 on_batch: Callable[[int], None] | None = None, max_restarts: int = 5,
                 restart_window_s: float = 60.0) -> None:
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
        self._batch: list[tuple[Item, asyncio.Future[Result]]] = []  # the batch being gathered or run
        self._stopping = False
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.deaths: deque[float] = deque(maxlen=max_restarts + 1)  # when the task died lately
        self.broken: str | None = None  # why it stays down, once it died too often

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
        self._worker.add_done_callback(self._died)

    def _died(self, task: asyncio.Task[None]) -> None:
        """The task ended: if not by `stop`, say so, free the requests of its batch, and start it again."""
        if self._stopping or task.cancelled():
            return
        error = task.exception()
        log.error("the micro-batcher task died; its %d waiting requests are refused", len(self._batch),
                  exc_info=error)
        failure = ServiceUnavailable("The classifier hit an internal error. Please try again.",
                                     headers={"Retry-After": "1"})
        for _, future in self._batch:
            if not future.done():
                future.set_exception(failure)
        self._batch = []
        now = time.monotonic()
        self.deaths.append(now)
        if len(self.deaths) > self.max_restarts and now - self.deaths[0] <= self.restart_window_s:
            self.broken = (f"the micro-batcher died {len(self.deaths)} times within {self.restart_window_s:g} s "
                           "and was not restarted; see the log")
            log.critical("the classifier can't classify: %s", self.broken)
            self._refuse_waiting()
            return
        self.start()

    def _refuse_waiting(self) -> None:
        waiting = [*self._carried]
        self._carried = []
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for _, future in waiting:
            if not future.done():
                future.set_exception(ServiceUnavailable(f"The classifier can't classify: {self.broken}."))

    async def stop(self) -> None:
        self._stopping = True
        if self._worker:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, item: Item) -> Result:
        if self.broken is not None:
            raise ServiceUnavailable("The classifier can't classify right now. Please try again later.")
        if self.queue_length >= self.max_queue:
            raise Overloaded("The server is busy. Please try again in a moment.", headers={"Retry-After": "1"})
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._batch = batch = self._carried or [await self._queue.get()]
            self._carried = []
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
            self._batch = live
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
