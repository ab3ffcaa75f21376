"""Search analytics' cost: the same gateway at the same concurrency, searches logged and not, in one run.

`analytics=false` on a request leaves that search out of the log, so one stack serves both: the
rounds alternate off, on, off, on, and `analytics_throughput_ratio` is the throughput with the
log over the throughput without it. The gateway's /metrics then says whether any entry was lost.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from bench.load import LoadFigures, Upload, run_load

ROUNDS = 2


@dataclass
class AnalyticsFigures:
    on: list[LoadFigures]
    off: list[LoadFigures]
    written: float
    dropped: float

    @staticmethod
    def _img_s(runs: list[LoadFigures]) -> float:
        seconds = sum(f.seconds for f in runs)
        return sum(f.completed for f in runs) / seconds if seconds else 0.0

    @property
    def ratio(self) -> float:
        off = self._img_s(self.off)
        return self._img_s(self.on) / off if off else 0.0

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.on + self.off)

    def summary(self) -> dict[str, object]:
        return {"concurrency": self.on[0].concurrency, "img_s_on": round(self._img_s(self.on), 2),
                "img_s_off": round(self._img_s(self.off), 2), "ratio": round(self.ratio, 3),
                "entries_written": self.written, "entries_dropped": self.dropped,
                "rounds": [{"off": off.summary(), "on": on.summary()} for off, on in zip(self.off, self.on)]}


def counter_total(metrics: str, name: str) -> float:
    """The sum of a counter's samples over its labels, from the Prometheus text format."""
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", metrics, re.MULTILINE))


def measure_analytics(gateway: str, operator_token: str, uploads: list[Upload], concurrency: int, seconds: float,
                      warmup_s: float,
                      cpu_seconds: Callable[[], dict[str, float]] | None = None) -> AnalyticsFigures:
    on: list[LoadFigures] = []
    off: list[LoadFigures] = []
    for _ in range(ROUNDS):
        off.append(asyncio.run(run_load(f"{gateway}/api/v1/search?analytics=false", uploads, concurrency, seconds,
                                        warmup_s, cpu_seconds)))
        on.append(asyncio.run(run_load(f"{gateway}/api/v1/search", uploads, concurrency, seconds, warmup_s,
                                       cpu_seconds)))
    metrics = httpx.get(f"{gateway}/metrics", headers={"Authorization": f"Bearer {operator_token}"}, timeout=30)
    metrics.raise_for_status()  # never a silent 0: the counters below are what says no entry was lost
    return AnalyticsFigures(on, off, counter_total(metrics.text, "analytics_entries_written_total"),
                            counter_total(metrics.text, "analytics_entries_dropped_total"))
