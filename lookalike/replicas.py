"""The replicas behind a service's base URLs, so that callers can spread requests over all of them.

`docker compose up --scale classifier=3` gives one name (`classifier`) three addresses, and a
Kubernetes headless Service does the same. An HTTP client that keeps connections alive would
stick to the one address it first connected to, so callers resolve the names themselves and
address each replica by IP: `http://classifier:8000` becomes `http://172.18.0.4:8000`,
`http://172.18.0.5:8000`, ... Several base URLs may also be given, separated by commas.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import time
from collections.abc import Sequence

import httpx

AddrInfo = tuple[int, int, int, str, tuple[object, ...]]


def split_urls(urls: str) -> list[str]:
    """`"http://a:1, http://b:2"` -> `["http://a:1", "http://b:2"]`."""
    return [url.strip().rstrip("/") for url in urls.split(",") if url.strip()]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _needs_resolving(url: httpx.URL) -> bool:
    # https keeps its hostname: the certificate names the host, not the address.
    return url.scheme == "http" and not _is_ip(url.host)


def _addresses(infos: Sequence[AddrInfo]) -> list[str]:
    """The distinct addresses, IPv4 first-class: `localhost` would otherwise also give ::1."""
    v4 = [str(info[4][0]) for info in infos if info[0] == socket.AF_INET]
    chosen = v4 or [str(info[4][0]) for info in infos if info[0] == socket.AF_INET6]
    return sorted(set(chosen), key=chosen.index)


def _with_host(url: httpx.URL, address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    port = url.port or 80
    return f"{url.scheme}://{host}:{port}{url.raw_path.decode().rstrip('/')}"


def expand(base_url: str) -> list[str]:
    """One URL per address that the base URL's host name resolves to (blocking; for jobs, not servers)."""
    url = httpx.URL(base_url)
    if not _needs_resolving(url):
        return [base_url.rstrip("/")]
    try:
        infos = socket.getaddrinfo(url.host, url.port or 80, type=socket.SOCK_STREAM)
    except OSError:
        return [base_url.rstrip("/")]  # unresolvable: the caller's request fails and says so
    return [_with_host(url, address) for address in _addresses(infos)]


class ReplicaSet:
    """Base URLs resolved to one URL per replica, refreshed every `refresh_s`, handed out in turn."""

    def __init__(self, base_urls: Sequence[str], refresh_s: float = 5.0) -> None:
        if not base_urls:
            raise ValueError("a replica set needs at least one base URL")
        self.base_urls = list(base_urls)
        self.refresh_s = refresh_s
        self._endpoints: list[str] = list(base_urls)
        self._resolved_at = float("-inf")
        self._turn = itertools.count()

    async def _resolve(self, base_url: str) -> list[str]:
        url = httpx.URL(base_url)
        if not _needs_resolving(url):
            return [base_url]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(url.host, url.port or 80, type=socket.SOCK_STREAM)
        except OSError:
            return [base_url]  # the request to it fails with a clear transport error
        return [_with_host(url, address) for address in _addresses(infos)] or [base_url]

    async def endpoints(self) -> list[str]:
        """Every replica's URL; the names are looked up again once `refresh_s` has passed."""
        if time.monotonic() - self._resolved_at >= self.refresh_s:
            resolved = await asyncio.gather(*(self._resolve(url) for url in self.base_urls))
            self._endpoints = list(dict.fromkeys(itertools.chain.from_iterable(resolved)))
            self._resolved_at = time.monotonic()
        return self._endpoints

    async def in_turn(self) -> list[str]:
        """All replicas, starting with the one whose turn it is: the first to try, then the others."""
        endpoints = await self.endpoints()
        start = next(self._turn) % len(endpoints)
        return endpoints[start:] + endpoints[:start]

    def refresh_soon(self) -> None:
        """A replica could not be reached: it may be gone, so look the names up again next time."""
        self._resolved_at = float("-inf")
