"""Photos fetched from a store's server within bounds: each way a server can fail is one failed photo, said why.

A real HTTP server on loopback (allowed for these tests, as FEED_ALLOWED_HOSTS=127.0.0.1 would),
real photos from ../shared. Addresses that must be refused are refused before any connection:
the resolver here is a table, and nothing is sent off this machine.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.feed.download import AddressPolicy, AddressRefused, Downloader, DownloadFailed, DownloadLimits
from lookalike.feed.photos import PhotoCache, PhotoCounts, PhotoResult, fetch_photo, fetch_photos
from tests.lookalike.feed.feed_server import FeedServer, Route, feed_server

LOOPBACK = AddressPolicy(["127.0.0.1"])
LIMITS = DownloadLimits(max_bytes=2_000_000, connect_timeout_s=5, total_timeout_s=2, max_redirects=3,
                        concurrency=4, per_host=2)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


@pytest.fixture(scope="module")
def photo(shared: Path) -> Path:
    return sorted((shared / "catalog" / "chair").glob("*.jpg"))[0]


def get(url: str, policy: AddressPolicy = LOOPBACK, resolver: dict[str, list[str]] | None = None) -> bytes | None:
    """The body at `url`; with `resolver`, names resolve by that table instead of DNS."""
    async def run() -> bytes | None:
        async def table(host: str, port: int) -> list[str]:
            return resolver[host]

        downloader = Downloader(policy, LIMITS, table) if resolver is not None else Downloader(policy, LIMITS)
        async with downloader:
            return (await downloader.get(url)).body
    return asyncio.run(run())


def fetch_into(cache: PhotoCache, url: str) -> tuple[str, str]:
    async def run() -> tuple[str, str]:
        async with Downloader(LOOPBACK, LIMITS) as downloader:
            result = await fetch_photo(url, cache, downloader)
            return result.how, result.reason
    return asyncio.run(run())


def test_a_photo_is_downloaded_and_kept_by_its_content(server: FeedServer, photo: Path, tmp_path: Path) -> None:
    url = server.photo("/p/chair.jpg", photo)
    cache = PhotoCache(tmp_path)
    assert fetch_into(cache, url) == ("downloaded", "")
    kept = cache.lookup(url)
    assert (tmp_path / kept.file).read_bytes() == photo.read_bytes() and kept.etag


@pytest.mark.parametrize(("route", "reason"), [
    (None, "HTTP 404"),
    (Route(b"oops", status=500, content_type="text/plain"), "HTTP 500"),
    (Route(b"<html><body>Sorry, this product is gone</body></html>"), "not a usable image"),
    ("truncated", "not a usable image"),
    (Route(b"\xff\xd8\xff" + b"x" * 3_000_000), "over the 2000000-byte cap"),
    (Route(b"\xff\xd8\xff" + b"x" * 3_000_000, chunked=True), "over the 2000000-byte cap; stopped reading"),
    (Route(b"", stall_s=60), "no complete answer within 2 s"),
    (Route(b"", status=302, content_type="text/plain", headers={"Location": "/p/photo.jpg"}), "more than 3 redirects"),
])
def test_each_way_a_server_fails_is_a_failed_photo_with_its_reason(server: FeedServer, photo: Path, tmp_path: Path,
                                                                  route: Route | str | None, reason: str) -> None:
    if route == "truncated":
        route = Route(photo.read_bytes()[:len(photo.read_bytes()) // 2])
    if isinstance(route, Route):
        server.routes["/p/photo.jpg"] = route
    how, why = fetch_into(PhotoCache(tmp_path), server.url("/p/photo.jpg"))
    assert how == "failed"
    assert reason in why


def test_a_failed_photo_that_is_cached_is_used_from_the_cache_with_a_warning(server: FeedServer, photo: Path,
                                                                             tmp_path: Path) -> None:
    cache = PhotoCache(tmp_path)
    url = server.photo("/p/chair.jpg", photo)
    fetch_into(cache, url)
    server.routes["/p/chair.jpg"] = Route(b"down for maintenance", status=503, content_type="text/html")
    assert fetch_into(cache, url) == ("from_cache", "HTTP 503 Service Unavailable")


def test_an_unchanged_photo_is_answered_304_and_its_body_not_sent_again(server: FeedServer, photo: Path,
                                                                        tmp_path: Path) -> None:
    cache = PhotoCache(tmp_path)
    url = server.photo("/p/chair.jpg", photo)
    fetch_into(cache, url)
    assert fetch_into(cache, url) == ("not_modified", "")
    assert server.requests["/p/chair.jpg"] == 2 and server.bodies["/p/chair.jpg"] == 1


def test_loopback_is_refused_unless_allowed_and_nothing_is_sent(server: FeedServer, photo: Path) -> None:
    url = server.photo("/p/chair.jpg", photo)
    with pytest.raises(AddressRefused, match="127.0.0.1 is a loopback address"):
        get(url, policy=AddressPolicy())
    assert server.requests["/p/chair.jpg"] == 0
    assert get(url, policy=AddressPolicy(["127.0.0.0/8"])) == photo.read_bytes()


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.7", "169.254.169.254", "224.0.0.1", "::1",
                                     "::ffff:127.0.0.1", "fe80::1", "0.0.0.0"])
def test_a_redirect_to_a_private_address_is_refused_before_any_connection(server: FeedServer, address: str) -> None:
    location = f"http://[{address}]/x.jpg" if ":" in address else f"http://{address}/x.jpg"
    server.routes["/p/moved.jpg"] = Route(b"", status=301, content_type="text/plain", headers={"Location": location})
    with pytest.raises(AddressRefused, match="address"):
        get(server.url("/p/moved.jpg"))


def test_a_name_is_checked_after_resolving_it_and_on_every_redirect(server: FeedServer, photo: Path) -> None:
    """cdn.example resolves (here, by a table) to a private address: refused, though its name looks public."""
    server.routes["/p/moved.jpg"] = Route(b"", status=302, content_type="text/plain",
                                          headers={"Location": "http://cdn.example/x.jpg"})
    resolver = {"cdn.example": ["10.9.8.7"], "shop.test": ["127.0.0.1"]}
    with pytest.raises(AddressRefused, match=r"cdn.example \(10.9.8.7\) is a private address"):
        get(server.url("/p/moved.jpg"), resolver=resolver)
    server.photo("/p/chair.jpg", photo)
    named = f"http://shop.test:{server.port}/p/chair.jpg"
    with pytest.raises(AddressRefused):
        get(named, policy=AddressPolicy(), resolver=resolver)
    assert get(named, policy=AddressPolicy(["shop.test"]), resolver=resolver) == photo.read_bytes()


def test_only_http_and_https_are_fetched(server: FeedServer) -> None:
    server.routes["/p/moved.jpg"] = Route(b"", status=302, content_type="text/plain",
                                          headers={"Location": "file:///etc/passwd"})
    with pytest.raises(DownloadFailed, match="only http and https"):
        get(server.url("/p/moved.jpg"))


def test_many_photos_are_fetched_within_the_bounds_and_counted(server: FeedServer, shared: Path,
                                                               tmp_path: Path) -> None:
    photos = sorted((shared / "catalog" / "lamp").glob("*.jpg"))[:6]
    urls = [server.photo(f"/p/{p.name}", p) for p in photos] + [server.url("/p/missing.jpg")]

    async def run() -> tuple[dict[str, PhotoResult], PhotoCounts]:
        async with Downloader(LOOPBACK, LIMITS) as downloader:
            return await fetch_photos(urls, PhotoCache(tmp_path), downloader)
    results, counts = asyncio.run(run())
    assert (counts.downloaded, counts.failed, counts.not_modified) == (6, 1, 0)
    assert counts.bytes_fetched >= sum(p.stat().st_size for p in photos)
    assert results[urls[-1]].reason == "HTTP 404 Not Found"


def test_https_connects_to_the_checked_address_and_verifies_the_certificate_for_the_name(photo: Path,
                                                                                         tmp_path: Path) -> None:
    """The request goes to the address checked, yet TLS checks the certificate against the URL's name."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=shop.test",
                    "-addext", "subjectAltName=DNS:shop.test", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    trusted = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    resolver = {"shop.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}

    async def get_tls(url: str) -> bytes | None:
        async def table(host: str, port: int) -> list[str]:
            return resolver[host]
        async with Downloader(LOOPBACK, LIMITS, table, verify=trusted) as downloader:
            return (await downloader.get(url)).body

    with feed_server(served) as server:
        server.photo("/p/chair.jpg", photo)
        assert asyncio.run(get_tls(f"https://shop.test:{server.port}/p/chair.jpg")) == photo.read_bytes()
        with pytest.raises(DownloadFailed, match="certificate"):
            asyncio.run(get_tls(f"https://other.test:{server.port}/p/chair.jpg"))
