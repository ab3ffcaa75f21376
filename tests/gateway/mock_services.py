"""The gateway app in this process, with its classifier and similarity service played by a function."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings

CLASSIFIER, SIMILARITY = "http://127.0.0.1:9001", "http://127.0.0.1:9002"


Gateways = Callable[..., TestClient]
"""Starts one more gateway over the same mocked services; keyword arguments are its settings."""


@contextmanager
def gateways_over(handle: Callable[[httpx.Request], httpx.Response], index: Path,
                  **defaults: Any) -> Iterator[Gateways]:
    """`gateway_over` for tests that start several gateways (replicas, or one per setting), each from an
    `address` of their choice (127.0.0.1 by default), all stopped at the end."""
    clients: list[TestClient] = []

    def start(address: str = "127.0.0.1", **settings: Any) -> TestClient:
        config = GatewaySettings(classifier_url=CLASSIFIER, similarity_url=SIMILARITY, index=index,
                                 **{**defaults, **settings})
        client = TestClient(create_app(config, httpx.MockTransport(handle)), client=(address, 50000))
        client.__enter__()
        clients.append(client)
        return client

    try:
        yield start
    finally:
        for client in clients:
            client.__exit__(None, None, None)


@contextmanager
def gateway_over(handle: Callable[[httpx.Request], httpx.Response], index: Path,
                 **settings: Any) -> Iterator[TestClient]:
    """A TestClient of the gateway whose calls to CLASSIFIER (port 9001) and SIMILARITY (9002) `handle` answers."""
    config = GatewaySettings(classifier_url=CLASSIFIER, similarity_url=SIMILARITY, index=index, **settings)
    with TestClient(create_app(config, httpx.MockTransport(handle))) as client:
        yield client
