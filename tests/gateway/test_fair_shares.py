"""Fair shares: one client's script can't crowd out every shopper.

The buckets' arithmetic runs in process on a clock the test turns; the flood runs against a real
gateway process on loopback, over a stand-in for its two services (a small HTTP server in this
process), so that the gateway sees real client addresses: 127.0.0.1 floods, 127.0.0.2 shops.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from gateway.fair_shares import FairShares, Share, TokenBuckets, limited
from lookalike.observability import Metrics
from lookalike.service import install_error_handlers
from tests.gateway.test_readiness import classifier_ready, similarity_ready
from tests.support import REPO, free_port, operator, wait_until_ok


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_one_request_per_refill() -> None:
    clock = Clock()
    buckets = TokenBuckets(Share(per_minute=60, burst=3), max_clients=10, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(1.0)  # one a second: the next token in 1 s
    clock.now += 0.5
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0
    clock.now += 3600  # an idle client refills to its burst, no further
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_each_client_has_its_own_bucket() -> None:
    buckets = TokenBuckets(Share(per_minute=60, burst=1), max_clients=10, clock=Clock())
    assert buckets.take("127.0.0.1/32") == 0 and buckets.take("127.0.0.1/32") > 0
    assert buckets.take("127.0.0.2/32") == 0


def test_memory_is_bounded_by_forgetting_the_least_recently_seen_client() -> None:
    buckets = TokenBuckets(Share(per_minute=60, burst=1), max_clients=100, clock=Clock())
    buckets.take("busy")
    for n in range(1000):
        buckets.take(f"passer-by-{n}")
        if n % 50 == 0:
            buckets.take("busy")  # seen lately: kept, and still empty
    assert len(buckets) == 100 and buckets.take("busy") > 0


def app_with_an_events_route(shares: FairShares) -> FastAPI:
    """The one line another route needs: `dependencies=[limited("events")]`."""
    app = FastAPI()
    install_error_handlers(app)
    app.state.fair_shares = shares
    router = APIRouter()

    @router.post("/api/v1/events", status_code=202, dependencies=[limited("events", operator_exempt=True)])
    async def events() -> dict[str, str]:
        return {"status": "accepted"}

    app.include_router(router)
    return app


def test_a_route_takes_a_limit_with_one_dependency_and_refusals_are_counted() -> None:
    metrics = Metrics()
    shares = FairShares({"events": Share(per_minute=1, burst=2)}, 100, metrics)
    with TestClient(app_with_an_events_route(shares)) as client:
        statuses = [client.post("/api/v1/events") for _ in range(4)]
    assert [r.status_code for r in statuses] == [202, 202, 429, 429]
    refused = statuses[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 55 <= int(refused.headers["retry-after"]) <= 60  # one a minute
    assert 'rate_limited_total{kind="events"} 2.0' in metrics.exposition().decode()


def test_a_store_server_sending_the_operator_token_has_no_share_to_use() -> None:
    """Add-to-cart and purchase events come from the store's own server, for all its shoppers, from one address."""
    shares = FairShares({"events": Share(per_minute=1, burst=2)}, 100, Metrics(), operator_token="store-token")
    with TestClient(app_with_an_events_route(shares)) as client:
        store = {client.post("/api/v1/events", headers={"Authorization": "Bearer store-token"}).status_code
                 for _ in range(10)}
        guessed = [client.post("/api/v1/events", headers={"Authorization": "Bearer guessed"}).status_code
                   for _ in range(3)]
    assert store == {202} and guessed == [202, 202, 429]


def test_zero_per_minute_is_no_limit() -> None:
    shares = FairShares({"events": Share(per_minute=0, burst=1)}, 100, Metrics())
    with TestClient(app_with_an_events_route(shares)) as client:
        assert {client.post("/api/v1/events").status_code for _ in range(20)} == {202}


class StandInSimilarity(BaseHTTPRequestHandler):
    """The similarity service as it answers when all is well: its readiness and a words search."""

    readiness = similarity_ready()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/readyz"):
            body = self.readiness
        elif self.path.startswith("/v1/search/text"):
            body = {"query": "chair", "category": None, "index_version": "v1",
                    "hits": [{"id": "chair-1", "name": "One", "category": "chair", "score": 0.9}]}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class StandInClassifier(StandInSimilarity):
    readiness = classifier_ready()


@dataclass
class LimitedGateway:
    url: str
    burst: int


@pytest.fixture(scope="module")
def limited_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedGateway]:
    """A real gateway process with small fair shares (a burst of 5, then one search a minute)."""
    services = [ThreadingHTTPServer(("127.0.0.1", 0), StandInClassifier),
                ThreadingHTTPServer(("127.0.0.1", 0), StandInSimilarity)]
    for server in services:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    classifier, similarity = (f"http://127.0.0.1:{server.server_address[1]}" for server in services)
    port, root = free_port(), tmp_path_factory.mktemp("fair-shares")
    env = {"GATEWAY_PORT": str(port), "CLASSIFIER_URL": classifier, "SIMILARITY_URL": similarity, "INDEX": str(root),
           "GATEWAY_SEARCHES_PER_MINUTE": "1", "GATEWAY_SEARCH_BURST": "5",
           "LOOKALIKE_ADMIN_TOKEN": "operator-token-of-the-test-stacks", "TEXT_MODEL": "none", "LOG_LEVEL": "WARNING"}
    with open(root / "gateway.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO, env={**_environment(), **env},
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/readyz", {"gateway": process}, root, 120)
        yield LimitedGateway(f"http://127.0.0.1:{port}", 5)
    finally:
        process.terminate()
        process.wait(timeout=30)
        for server in services:
            server.shutdown()


def _environment() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.mark.anyio
async def test_a_flood_from_one_address_is_refused_while_another_address_keeps_searching(
        limited_gateway: LimitedGateway) -> None:
    words = f"{limited_gateway.url}/api/v1/search/text"
    flooder = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.1"), timeout=30)
    shopper = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"), timeout=30)
    async with flooder, shopper:
        flood = await asyncio.gather(*(flooder.get(words, params={"q": "chair"}) for _ in range(40)))
        shopping = [await shopper.get(words, params={"q": "chair"}) for _ in range(limited_gateway.burst - 1)]
        flood += await asyncio.gather(*(flooder.get(words, params={"q": "chair"}) for _ in range(10)))
        shopping.append(await shopper.get(words, params={"q": "chair"}))
    refused = [r for r in flood if r.status_code == 429]
    assert {r.status_code for r in flood} == {200, 429} and len(refused) >= 50 - limited_gateway.burst - 1
    assert all(r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1 for r in refused)
    assert [r.status_code for r in shopping] == [200] * limited_gateway.burst
    metrics = httpx.get(f"{limited_gateway.url}/metrics", headers=operator(), timeout=10).text
    assert f'rate_limited_total{{kind="searches"}} {float(len(refused))}' in metrics
