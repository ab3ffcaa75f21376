"""How far the job is: a progress bar with images/s on a terminal, plain log lines elsewhere.

A bar redraws one line with carriage returns, which turns a CI log or a cron mail into noise;
so it is shown only when stderr is a terminal, and everything else gets a line every few seconds.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from tqdm import tqdm

log = logging.getLogger("lookalike.indexing")


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, interval_s: float = 5.0) -> None:
        stream = stream or sys.stderr
        self.total = total
        self.interval_s = interval_s
        self.started = self.last_line = time.perf_counter()
        self.done = self.embedded = self.reused = 0
        self.logged = -1  # `done` when the last line was written
        self.bar = tqdm(total=total, unit="img", desc="indexing", file=stream, dynamic_ncols=True,
                        smoothing=0.1) if stream.isatty() else None

    def advance(self, *, embedded: int = 0, reused: int = 0, skipped: int = 0) -> None:
        step = embedded + reused + skipped
        self.done += step
        self.embedded += embedded
        self.reused += reused
        if self.bar is not None:
            self.bar.set_postfix(embedded=self.embedded, reused=self.reused, refresh=False)
            self.bar.update(step)
        elif time.perf_counter() - self.last_line >= self.interval_s:
            self._log_line()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.logged != self.done:
            self._log_line()

    def _log_line(self) -> None:
        self.last_line, self.logged = time.perf_counter(), self.done
        rate = self.done / max(self.last_line - self.started, 1e-9)
        log.info("%d of %d images (embedded %d, reused %d), %.1f images/s",
                 self.done, self.total, self.embedded, self.reused, rate)
