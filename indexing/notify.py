"""Tell running services that a new index version is published."""

from __future__ import annotations

import httpx

from lookalike.replicas import expand


def notify_reload(urls: list[str], timeout_s: float = 30.0) -> list[str]:
    """POST /v1/reload to each service, to every replica behind its name; one line per replica saying how it went."""
    lines = []
    for url in [replica for base in urls for replica in expand(base)]:
        endpoint = url + "/v1/reload"
        try:
            response = httpx.post(endpoint, timeout=timeout_s)
        except httpx.HTTPError as exc:
            lines.append(f"{url}: not reached ({exc.__class__.__name__}); it will load the new index when it restarts")
            continue
        if response.status_code == 200:
            lines.append(f"{url}: now serving {response.json()['index_version']}")
        else:
            lines.append(f"{url}: reload refused ({response.status_code}): {response.text[:300]}")
    return lines
