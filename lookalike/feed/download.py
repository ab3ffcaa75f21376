"""Fetching a feed and its photos from servers we don't run, within bounds a store can trust.

- Bounds: at most `concurrency` downloads at once, `per_host` to one host; a connect timeout and
  a total one per download (headers, redirects and body together); a size cap checked against
  Content-Length and again while the body streams (decoded bytes, so a gzip bomb stops too);
  at most `max_redirects` redirects, each followed by hand.
- Addresses: a URL's host is resolved here, every address checked, and the connection made to
  the checked address (Host header and TLS name kept), so a second DNS answer can't point it
  elsewhere (rebinding). Loopback, private, link-local, multicast and other non-global addresses
  are refused unless `allowed` names the host, the address or a network holding it. Each
  redirect is checked the same way before anything connects to it.
- Conditional requests: `If-None-Match` and `If-Modified-Since` from what the caller kept; a 304
  comes back as a `Downloaded` without a body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
REDIRECTS = {301, 302, 303, 307, 308}
USER_AGENT = "Lookalike-feed-indexer/1"


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int = 20 * 1024 * 1024
    connect_timeout_s: float = 10.0
    total_timeout_s: float = 60.0
    max_redirects: int = 5
    concurrency: int = 16
    per_host: int = 4


class DownloadFailed(Exception):
    """One URL could not be fetched; `reason` says why in words a store manager understands."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AddressRefused(DownloadFailed):
    """The URL's host is, or resolves to, an address downloads may not reach."""


@dataclass(frozen=True)
class Downloaded:
    url: str  # the last URL, after redirects
    body: bytes | None  # None: 304 Not Modified
    etag: str | None
    last_modified: str | None


def _address_kind(address: IPAddress) -> str | None:
    """Why an address is not for downloads, or None if it is an ordinary public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _address_kind(address.ipv4_mapped)
    for kind, flag in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                       ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
                       ("private", address.is_private), ("reserved", address.is_reserved)):
        if flag:
            return kind
    return None if address.is_global else "non-public"


class AddressPolicy:
    """Which hosts and addresses downloads may reach: public ones, and whatever `allowed` names."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in (a.strip() for a in allowed):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.hosts.add(entry.casefold().rstrip("."))

    def check(self, host: str, address: IPAddress) -> None:
        """AddressRefused unless `host` is named, or `address` is allowed or public."""
        if host.casefold().rstrip(".") in self.hosts or any(address in net for net in self.networks
                                                             if net.version == address.version):
            return
        kind = _address_kind(address)
        if kind is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            raise AddressRefused(f"refused: {shown} is a {kind} address; downloads go to public addresses only "
                                 "(FEED_ALLOWED_HOSTS or --allow-host allow others)")


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses, from the system's resolver, without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Downloader:
    """One run's downloads: one connection pool, the bounds above, the address policy."""

    def __init__(self, policy: AddressPolicy, limits: DownloadLimits = DownloadLimits(),
                 resolver: Resolver = system_resolver, verify: ssl.SSLContext | None = None) -> None:
        self.policy, self.limits, self.resolver = policy, limits, resolver
        self.verify: ssl.SSLContext | bool = verify if verify is not None else True
        self.slots = asyncio.Semaphore(limits.concurrency)
        self.host_slots: dict[str, asyncio.Semaphore] = {}
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.bytes_fetched = 0

    def client(self, host: str) -> httpx.AsyncClient:
        """One connection pool per host name: the pool knows connections by address, and a TLS connection
        checked for one name must never carry a request for another name on the same address."""
        client = self.clients.get(host)
        if client is None:
            client = self.clients[host] = httpx.AsyncClient(
                timeout=httpx.Timeout(self.limits.total_timeout_s, connect=self.limits.connect_timeout_s),
                limits=httpx.Limits(max_connections=self.limits.per_host,
                                    max_keepalive_connections=self.limits.per_host),
                follow_redirects=False, trust_env=False,  # no proxy from the environment: we connect where we checked
                verify=self.verify, headers={"User-Agent": USER_AGENT})
        return client

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.clients.clear()

    async def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
                  max_bytes: int | None = None) -> Downloaded:
        """The body at `url` (None on 304), or DownloadFailed saying why."""
        host = httpx.URL(url).host if url.startswith(("http://", "https://")) else ""
        slot = self.host_slots.setdefault(host, asyncio.Semaphore(self.limits.per_host))
        async with self.slots, slot:
            try:
                async with asyncio.timeout(self.limits.total_timeout_s):
                    return await self._follow(url, etag, last_modified, max_bytes or self.limits.max_bytes)
            except TimeoutError:
                raise DownloadFailed(f"no complete answer within {self.limits.total_timeout_s:g} s") from None
            except httpx.ConnectTimeout:
                raise DownloadFailed(f"could not connect within {self.limits.connect_timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise DownloadFailed(f"{type(exc).__name__}: {exc or 'connection failed'}") from None

    async def checked_address(self, host: str, port: int) -> str:
        """An address of `host` that the policy allows, to connect to; AddressRefused if it has none."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            self.policy.check(host, literal)
            return str(literal)
        try:
            addresses = await self.resolver(host, port)
        except OSError as exc:
            raise DownloadFailed(f"{host} could not be resolved: {exc.strerror or exc}") from None
        refusal: AddressRefused | None = None
        for text in addresses:
            try:
                self.policy.check(host, ipaddress.ip_address(text.split("%", 1)[0]))
            except AddressRefused as exc:
                refusal = refusal or exc
                continue
            return text.split("%", 1)[0]
        raise refusal or DownloadFailed(f"{host} has no address")

    async def _follow(self, url: str, etag: str | None, last_modified: str | None, max_bytes: int) -> Downloaded:
        current = url
        for _ in range(self.limits.max_redirects + 1):
            try:
                parsed = httpx.URL(current)
            except httpx.InvalidURL as exc:
                raise DownloadFailed(f"not a usable URL: {exc}") from None
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise DownloadFailed(f"only http and https URLs are fetched, not {current[:100]!r}")
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            address = await self.checked_address(parsed.host, port)
            headers = {"Host": parsed.netloc.decode("ascii")}
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
            extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
            client = self.client(parsed.host)
            request = client.build_request("GET", parsed.copy_with(host=address), headers=headers,
                                           extensions=extensions)
            response = await client.send(request, stream=True)
            try:
                if response.status_code in REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise DownloadFailed(f"HTTP {response.status_code} redirect without a Location")
                    current = urljoin(str(parsed), location)
                    continue
                if response.status_code == 304:
                    if not (etag or last_modified):
                        raise DownloadFailed("HTTP 304 to a request that asked for no comparison")
                    return Downloaded(current, None, response.headers.get("etag") or etag,
                                      response.headers.get("last-modified") or last_modified)
                if response.status_code != 200:
                    raise DownloadFailed(f"HTTP {response.status_code} {response.reason_phrase}".strip())
                body = await self._body(response, max_bytes)
                return Downloaded(current, body, response.headers.get("etag"), response.headers.get("last-modified"))
            finally:
                await response.aclose()
        raise DownloadFailed(f"more than {self.limits.max_redirects} redirects")

    async def _body(self, response: httpx.Response, max_bytes: int) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise DownloadFailed(f"{int(declared)} bytes announced, over the {max_bytes}-byte cap")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            self.bytes_fetched += len(chunk)
            body += chunk
            if len(body) > max_bytes:
                raise DownloadFailed(f"over the {max_bytes}-byte cap; stopped reading")
        return bytes(body)
