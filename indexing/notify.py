"""Tell running services that a new index version is published."""

from __future__ import annotations

import httpx

from lookalike.replicas import expand


def notify_reload(urls: list[str], timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None) -> list[str]:
    """POST /v1/reload to each service, to every replica behind its name; one line per replica saying how it went.

    `transport` stands in for the network in tests.
    """
    lines = []
    with httpx.Client(timeout=timeout_s, transport=transport) as client:
        for url in [replica for base in urls for replica in expand(base)]:
            lines.append(_reload(client, url))
    return lines


def _reload(client: httpx.Client, url: str) -> str:
    try:
        response = client.post(url + "/v1/reload")
    except httpx.HTTPError as exc:
        return f"{url}: not reached ({exc.__class__.__name__}); it will load the new index when it restarts"
    if response.status_code == 200:
        return f"{url}: now serving {response.json()['index_version']}"
    return f"{url}: reload refused ({response.status_code}): {response.text[:300]}"
