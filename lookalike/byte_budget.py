"""A budget of bytes shared by the requests of one process: reserve before reading, give back after.

Waiters are served in order of arrival, first fit: one that fits is let in even when an
earlier, larger one does not, so a search photo is not held up behind a 19 MB upload. A
reservation that cannot be met within its wait is refused rather than queued for ever. Belongs
to one event loop: make it in the app's lifespan or at first use on that loop.
"""

from __future__ import annotations

import asyncio


class ByteBudget:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def clamp(self, size: int) -> int:
        """What a reservation of `size` takes: one request larger than the whole budget may still run alone."""
        return min(size, self.capacity)

    async def reserve(self, size: int, wait_s: float) -> bool:
        """Take `size` bytes (see `clamp`), waiting up to `wait_s` for room; False if there was none."""
        size = self.clamp(size)
        if self.in_use + size <= self.capacity:
            self.in_use += size
            return True
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (size, granted)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(granted), wait_s)
        except TimeoutError:
            if granted.done():  # granted just as the wait ran out: keep it
                return True
            self._waiters.remove(waiter)
            return False
        except asyncio.CancelledError:
            if granted.done():
                self.release(size)
            else:
                self._waiters.remove(waiter)
            raise
        return True

    def release(self, size: int) -> None:
        """Give back a reservation made with `reserve(size, ...)`."""
        self.in_use -= self.clamp(size)
        self._grant_waiting()

    def _grant_waiting(self) -> None:
        for waiter in list(self._waiters):
            size, granted = waiter
            if self.in_use + size <= self.capacity:
                self._waiters.remove(waiter)
                self.in_use += size
                granted.set_result(None)
