"""A closed-loop load generator: `concurrency` clients, each sending its next upload as soon as
the last one is answered, for a fixed time after a warm-up.

Multipart bodies are built once, up front, so the generator spends its CPU on sending, not on
encoding: on a 2-core machine it shares the cores with the services it measures.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np


@dataclass(frozen=True)
class Upload:
    body: bytes
    content_type: str
    query: str = ""
    """Appended to the url, e.g. `?photo=<handle>&category=sofa` for a steered search with no body."""


def multipart_upload(image: bytes, field_name: str = "image") -> Upload:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"photo.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return Upload(head + image + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")


@dataclass
class LoadFigures:
    concurrency: int
    seconds: float
    completed: int
    errors: int
    latencies_ms: list[float] = field(repr=False)
    error_kinds: dict[str, int] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """CPU milliseconds per answered request, by process, inside the measured window."""

    @property
    def img_s(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, float | int | dict[str, int] | dict[str, float]]:
        return {"concurrency": self.concurrency, "img_s": round(self.img_s, 2), "requests": self.completed,
                "errors": self.errors, "error_kinds": self.error_kinds,
                "p50_ms": round(self.percentile(50), 1), "p95_ms": round(self.percentile(95), 1),
                "p99_ms": round(self.percentile(99), 1),
                "cpu_ms_per_request": {k: round(v, 2) for k, v in self.cpu_ms.items()}}


async def run_load(url: str, uploads: list[Upload], concurrency: int, seconds: float,
                   warmup_s: float, cpu_seconds: Callable[[], dict[str, float]] | None = None) -> LoadFigures:
    """POST uploads round robin to `url`; throughput and latency count the answers inside the window.

    `cpu_seconds`, if given, is read at the window's start and end: each process's CPU time,
    so the figures say where a request's CPU goes.
    """
    started = time.perf_counter()
    window = (started + warmup_s, started + warmup_s + seconds)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    completed = 0

    async def client(worker: int, http: httpx.AsyncClient) -> None:
        nonlocal completed
        i = worker
        while time.perf_counter() < window[1]:
            upload = uploads[i % len(uploads)]
            i += concurrency
            sent = time.perf_counter()
            try:
                response = await http.post(url + upload.query, content=upload.body,
                                           headers={"content-type": upload.content_type} if upload.body else {})
                failure = None if response.status_code == 200 else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                failure = type(exc).__name__
            answered = time.perf_counter()
            if failure:
                errors[failure] += 1  # counted during the warm-up too: no failure goes unseen
            elif window[0] <= answered <= window[1]:
                completed += 1
                latencies.append((answered - sent) * 1000)

    async def cpu_in_window() -> dict[str, float]:
        if cpu_seconds is None:
            return {}
        await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
        start = cpu_seconds()
        await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
        end = cpu_seconds()
        return {name: end[name] - start[name] for name in end}

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        measuring = asyncio.ensure_future(cpu_in_window())
        await asyncio.gather(*(client(w, http) for w in range(concurrency)))
        cpu = await measuring
    per_request = {name: 1000 * used / completed for name, used in cpu.items()} if completed else {}
    return LoadFigures(concurrency, seconds, completed, sum(errors.values()), latencies, dict(errors), per_request)
