"""A bounded load test on loopback: real photos, many at once, zero 5xx, memory flat.

`LOAD_REQUESTS` (default 1000) and `LOAD_CONCURRENCY` (default 32) set the size; `LOAD_MAX_S`
(default 300) bounds the time on a slow or shared machine: past it no new request starts, and
the test says how many it sent. The first tenth is warm-up; every service's RSS after it is the
baseline its RSS at the end is held to, plus, for the gateway, the bytes its photo-handle store may
hold by design (GATEWAY_PHOTO_HANDLE_MAX_BYTES).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path

import httpx
import pytest

from gateway.settings import GatewaySettings
from tests.support import Services

pytestmark = pytest.mark.anyio

REQUESTS = int(os.environ.get("LOAD_REQUESTS", "1000"))
CONCURRENCY = int(os.environ.get("LOAD_CONCURRENCY", "32"))
MAX_SECONDS = float(os.environ.get("LOAD_MAX_S", "300"))
RSS_GROWTH_LIMIT = 1.2


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        line = next(line for line in fh if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def run_load(gateway: str, photos: list[bytes], count: int, deadline: float) -> list[str]:
    """`count` searches, CONCURRENCY at a time; one outcome per request: its status, or the transport error."""
    outcomes: list[str] = []
    cycle = itertools.cycle(photos)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=gateway, timeout=120, limits=limits) as client:
        async def worker(share: int) -> None:
            for _ in range(share):
                if time.monotonic() > deadline:
                    return
                try:
                    response = await client.post("/api/v1/search", params={"k": 5},
                                                 files={"image": ("photo.jpg", next(cycle), "image/jpeg")})
                    outcomes.append(str(response.status_code))
                except httpx.TransportError as exc:
                    outcomes.append(type(exc).__name__)

        shares = [count // CONCURRENCY + (i < count % CONCURRENCY) for i in range(CONCURRENCY)]
        await asyncio.gather(*(worker(share) for share in shares))
    return outcomes


async def test_a_thousand_searches_end_with_no_5xx_no_connection_errors_and_flat_memory(
        services: Services, query_photos: list[tuple[Path, str]]) -> None:
    photos = [path.read_bytes() for path, _ in query_photos]
    deadline = time.monotonic() + MAX_SECONDS
    warm_up = max(REQUESTS // 10, CONCURRENCY)
    started = time.monotonic()
    outcomes = await run_load(services.gateway, photos, warm_up, float("inf"))
    baseline = {name: rss_bytes(services.pid(name)) for name in Services.modules}
    outcomes += await run_load(services.gateway, photos, REQUESTS - warm_up, deadline)
    elapsed = time.monotonic() - started
    final = {name: rss_bytes(services.pid(name)) for name in Services.modules}

    print(f"\nload: {len(outcomes)} of {REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.0f} s; "
          + ", ".join(f"{n} RSS {baseline[n] / 2**20:.0f} -> {final[n] / 2**20:.0f} MiB" for n in Services.modules))
    # What a service holds on purpose, bounded: the gateway keeps each searched photo under its handle.
    by_design = {name: 0 for name in Services.modules} | {"gateway": GatewaySettings().photo_handle_max_bytes}
    failures = [o for o in outcomes if o != "200"]
    assert failures == [], f"{len(failures)} of {len(outcomes)} failed: {sorted(set(failures))}"
    assert len(outcomes) >= 2 * warm_up, "too few requests after warm-up to judge memory; raise LOAD_MAX_S"
    for name in Services.modules:
        assert final[name] <= RSS_GROWTH_LIMIT * baseline[name] + by_design[name], (name, baseline[name], final[name])
