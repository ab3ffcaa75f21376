"""Background tasks that never die quietly: a task that ends with an error is logged and started again.

An `asyncio` task that raises keeps its exception to itself until someone awaits it, which a
service's lifespan does only at shutdown: a pruning loop or a writer could stop on the first
unexpected error and nobody would know. `Supervised` gives such a loop a done-callback that logs
the error with its traceback, counts it, and starts the loop again after `restart_after_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("lookalike.background")


class Supervised:
    """One long-running loop, `run()`, restarted `restart_after_s` after it dies of an error; `stop` ends it."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]], restart_after_s: float = 5.0) -> None:
        self.name = name
        self.run = run
        self.restart_after_s = restart_after_s
        self.restarts = 0  # deaths so far: a test, or a metric, can read it
        self._task: asyncio.Task[None] | None = None
        self._restart: asyncio.TimerHandle | None = None
        self._stopping = False

    def start(self) -> None:
        self._restart = None
        self._task = asyncio.create_task(self.run(), name=self.name)
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._stopping or task.cancelled():
            return
        error = task.exception()
        self.restarts += 1
        if error is None:
            log.error("background task %s returned, which it never should; starting it again in %g s",
                      self.name, self.restart_after_s)
        else:
            log.error("background task %s died; starting it again in %g s", self.name, self.restart_after_s,
                      exc_info=error)
        self._restart = asyncio.get_running_loop().call_later(self.restart_after_s, self.start)

    async def stop(self) -> None:
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # its error, if any, was logged as it died
