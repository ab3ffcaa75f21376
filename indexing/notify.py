"""Tell running services that a new index version is published."""

from __future__ import annotations

import httpx


def notify_reload(urls: list[str], timeout_s: float = 30.0) -> list[str]:
    """POST /v1/reload to each service; one line per service saying how it went."""
    lines = []
    for url in urls:
        endpoint = url.rstrip("/") + "/v1/reload"
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
