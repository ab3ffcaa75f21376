"""Floods on loopback against the real stack: memory stays bounded, slow clients are cut off, searches go on.

Uploads are sent as urllib and requests send them, the whole body first and then the answer
read, over raw sockets so that a reset shows as a reset. Tests that need other limits restart
only the gateway with them (a second or two) and give the suite its usual gateway back after.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import requests

from tests.support import Services, operator

MB = 1_000_000
BOUNDARY = "lookalike-flood"


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line for line in fh if line.startswith(field + ":")).split()[1])


def reset_peak_rss(pid: int) -> None:
    """From here on VmHWM is the peak since now (proc(5): clear_refs 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


def multipart(photo: bytes, size: int) -> bytes:
    """A form whose `image` is a real JPEG padded to `size` bytes: decoders stop at its end marker."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head + photo + bytes(size - len(photo)) + tail


def request_head(port: int, length: int) -> bytes:
    return (f"POST /api/v1/search?k=3 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n\r\n").encode()


@dataclass
class Answer:
    status: int | None  # None: no answer, see `failure`
    code: str | None = None  # the JSON error's code
    failure: str | None = None  # "reset", "closed", ...
    content_type: str = ""

    def __str__(self) -> str:
        return self.failure or f"{self.status} {self.code or ''}".strip()


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    status_line = await reader.readline()
    if not status_line:
        return Answer(None, failure="closed")
    status = int(status_line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    code = None
    if status >= 400 and headers.get("content-type", "").startswith("application/json"):
        code = json.loads(body)["error"]["code"]
    return Answer(status, code, content_type=headers.get("content-type", ""))


async def post_like_urllib(port: int, body: bytes) -> Answer:
    """Send the headers and the whole body, then read the answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return Answer(None, failure=f"connect: {exc}")
    try:
        writer.write(request_head(port, len(body)))
        view = memoryview(body)
        for at in range(0, len(view), 256 * 1024):
            writer.write(view[at:at + 256 * 1024])
            await writer.drain()
        return await read_answer(reader)
    except (ConnectionResetError, BrokenPipeError):
        return Answer(None, failure="reset")
    except asyncio.IncompleteReadError:
        return Answer(None, failure="closed")
    finally:
        writer.close()


async def search_latencies(gateway: str, photo: bytes, count: int, pause_s: float = 0.0,
                           latencies: list[float] | None = None) -> list[float]:
    """`count` normal searches one after another, each of which must succeed; their latencies."""
    latencies = [] if latencies is None else latencies
    # A new connection for each search: this process also drives the flood, and a loop stalled past the
    # gateway's 5 s keep-alive would otherwise reuse a connection the gateway has just closed as idle.
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=gateway, timeout=30, limits=fresh) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = await client.post("/api/v1/search", params={"k": 3},
                                         files={"image": ("photo.jpg", photo, "image/jpeg")})
            assert response.status_code == 200, response.text[:300]
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(pause_s)
    return latencies


@contextmanager
def gateway_with(services: Services, env: dict[str, str]) -> Iterator[Services]:
    """The gateway restarted with `env`, then restarted as it was."""
    services.stop("gateway")
    services.start("gateway", env=env)
    try:
        services.wait_ready()
        yield services
    finally:
        services.stop("gateway")
        services.start("gateway")
        services.wait_ready()


@pytest.fixture(scope="module")
def photo(query_photos: list[tuple[Path, str]]) -> bytes:
    return query_photos[0][0].read_bytes()


async def settled_rss(pids: dict[str, int], idle: dict[str, int], timeout_s: float = 15) -> dict[str, int]:
    """RSS once every process is back within 1.3x of idle, or as it is after `timeout_s`.

    The gateway and the classifier give memory back a second or two after the last upload ends.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        now = {name: rss_kb(pid) for name, pid in pids.items()}
        if all(now[n] < 1.3 * idle[n] for n in pids) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.5)


@pytest.mark.anyio
async def test_300_concurrent_19_mb_uploads_are_answered_within_bounded_memory(
        services: Services, photo: bytes) -> None:
    await search_latencies(services.gateway, photo, 3)  # warm
    pids = {name: services.pid(name) for name in ("gateway", "classifier")}
    idle = {name: rss_kb(pid) for name, pid in pids.items()}
    for pid in pids.values():
        reset_peak_rss(pid)
    body = multipart(photo, 19 * MB)

    flood = asyncio.gather(*(post_like_urllib(services.ports["gateway"], body) for _ in range(300)))
    during: list[float] = []
    searches = asyncio.ensure_future(search_latencies(services.gateway, photo, 1_000_000, 0.5, during))
    started = time.monotonic()
    answers = await flood
    elapsed = time.monotonic() - started
    assert not searches.done(), f"a search failed during the flood: {searches.exception()!r}"
    searches.cancel()
    peak = {name: rss_kb(pid, "VmHWM") for name, pid in pids.items()}
    after = await settled_rss(pids, idle)

    tally: dict[str, int] = {}
    for answer in answers:
        tally[str(answer)] = tally.get(str(answer), 0) + 1
    print(f"\n300 x 19 MB in {elapsed:.1f} s: {tally}; {len(during)} searches meanwhile, slowest "
          f"{max(during, default=0):.2f} s; RSS MiB idle/peak/after: "
          + ", ".join(f"{n} {idle[n] / 1024:.0f}/{peak[n] / 1024:.0f}/{after[n] / 1024:.0f}" for n in pids))
    assert during, "no search finished during the flood"
    for answer in answers:
        assert answer.status is not None, f"an upload got no answer: {answer}"
        assert answer.status == 200 or (400 <= answer.status < 500 and answer.code) or (
            answer.status == 503 and answer.code == "busy"), str(answer)
    assert tally.get("200", 0) > 0, "the budget must let some uploads through"
    assert peak["gateway"] < 800 * 1024, peak
    assert peak["classifier"] < idle["classifier"] + 600 * 1024, (idle, peak)
    for name in pids:
        assert after[name] < 1.3 * idle[name], (name, idle[name], after[name])


SLOW = {"UPLOAD_TIMEOUT_S": 8.0, "UPLOAD_IDLE_S": 3.0, "LINGER_S": 2.0}
# Past the deadline a client may wait for the budget (2 s) and for the lingering close, on a busy machine.
SLOW_MARGIN_S = 2.0 + SLOW["LINGER_S"] + 8.0


async def slow_client(port: int, trickle: bool) -> tuple[str, float]:
    """Headers for 10 MB and a few bytes, then silence (or a byte a second); what it got, and when."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_head(port, 10 * MB) + f"--{BOUNDARY}\r\n".encode())
        answer = asyncio.ensure_future(read_answer(reader))
        while trickle and not answer.done():
            await asyncio.wait({answer}, timeout=1.0)
            if not answer.done():
                writer.write(b"x")
        got = str(await answer)
    except (ConnectionResetError, BrokenPipeError):
        got = "reset"
    except asyncio.IncompleteReadError:
        got = "closed"
    finally:
        writer.close()
    return got, time.monotonic() - started


@pytest.mark.anyio
async def test_500_slow_clients_are_cut_off_while_searches_keep_their_pace(services: Services, photo: bytes) -> None:
    with gateway_with(services, {name: str(value) for name, value in SLOW.items()}):
        await search_latencies(services.gateway, photo, 3)  # warm
        quiet = statistics.median(await search_latencies(services.gateway, photo, 15, 0.1))
        port = services.ports["gateway"]
        clients = asyncio.gather(*(slow_client(port, trickle=i % 2 == 1) for i in range(500)))
        await asyncio.sleep(1)  # all connected, and stalled
        loaded = statistics.median(await search_latencies(services.gateway, photo, 15, 0.1))
        outcomes = await clients
    tally: dict[str, int] = {}
    for got, _ in outcomes:
        tally[got] = tally.get(got, 0) + 1
    slowest = max(took for _, took in outcomes)
    print(f"\n500 slow clients: {tally}, the last gone after {slowest:.1f} s; "
          f"search p50 {quiet * 1000:.0f} ms quiet, {loaded * 1000:.0f} ms meanwhile")
    assert set(tally) <= {"408 upload_timeout", "503 busy", "closed", "reset"}, tally
    assert slowest < SLOW["UPLOAD_TIMEOUT_S"] + SLOW_MARGIN_S
    assert loaded < 2 * quiet, (quiet, loaded)


def multipart_25_mb(photo: bytes) -> tuple[bytes, str]:
    return multipart(photo, 25 * MB), f"multipart/form-data; boundary={BOUNDARY}"


def urllib_post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def requests_post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    response = requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=60)
    return response.status_code, response.json()


def httpx_post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    response = httpx.post(url, content=body, headers={"Content-Type": content_type}, timeout=60)
    return response.status_code, response.json()


@pytest.mark.parametrize("client", [urllib_post, requests_post, httpx_post], ids=["urllib", "requests", "httpx"])
def test_a_25_mb_upload_gets_the_json_413_from_every_common_client(services: Services, photo: bytes,
                                                                   client: Callable[..., tuple[int, dict[str, object]]],
                                                                   ) -> None:
    """None of them sends `Expect: 100-continue`; urllib also sends `Connection: close`."""
    status, body = client(f"{services.gateway}/api/v1/search", *multipart_25_mb(photo))
    assert status == 413 and body["error"]["code"] == "upload_too_large", body
    assert httpx.get(f"{services.gateway}/readyz", timeout=10).status_code == 200


CONNECTIONS = {"HTTP_MAX_CONNECTIONS": "20", "HTTP_HEADER_TIMEOUT_S": "4", "HTTP_KEEP_ALIVE_S": "1"}


def closed_within(sock: socket.socket, timeout_s: float) -> float | None:
    """Seconds until the server closes `sock` (reading and dropping what it sends), or None."""
    started = time.monotonic()
    sock.settimeout(timeout_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def raw_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, str]]:
    """Status, headers (lower-cased) and the JSON error of one answer read off a raw socket until it closes."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    assert headers.get("content-type") == "application/json", received[:300]
    return int(status_line.split()[1]), headers, json.loads(body)["error"]


class TestConnectionLimits:
    """uvicorn's limits, and the two the request head lacked, on a gateway restarted with small ones."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def limited(cls, services: Services) -> Iterator[None]:
        with gateway_with(services, CONNECTIONS):
            yield

    def test_unfinished_headers_and_silent_connections_are_closed(self, services: Services) -> None:
        port = services.ports["gateway"]
        with connect(port) as silent, connect(port) as dribbling:
            for line in range(60):  # a header line every 0.25 s, for longer than the 4 s allowed
                try:
                    dribbling.sendall(b"X-Slow: 1\r\n" if line else b"GET /healthz HTTP/1.1\r\n")
                except (ConnectionResetError, BrokenPipeError):
                    break
                time.sleep(0.25)
            else:
                pytest.fail("a connection whose headers never finish was not closed")
            assert closed_within(silent, 10) is not None, "a connection that sent nothing was not closed"

    def test_an_idle_keep_alive_connection_is_closed(self, services: Services) -> None:
        with connect(services.ports["gateway"]) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.recv(65536).startswith(b"HTTP/1.1 200")
            assert closed_within(idle, 10) is not None, "an idle keep-alive connection was not closed"

    def test_headers_without_end_get_431_in_json(self, services: Services) -> None:
        with connect(services.ports["gateway"]) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 200_000)
            status, headers, error = raw_answer(sock)
        assert status == 431 and error["code"] == "headers_too_large" and "headers" in error["message"]

    def test_connections_beyond_the_cap_get_503_and_the_service_recovers(self, services: Services) -> None:
        port = services.ports["gateway"]
        held = [connect(port) for _ in range(int(CONNECTIONS["HTTP_MAX_CONNECTIONS"]))]
        try:
            with connect(port) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, headers, error = raw_answer(extra)
            assert status == 503 and error["code"] == "too_many_connections" and headers["retry-after"] == "1"
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.5)
        assert httpx.get(f"{services.gateway}/healthz", timeout=10).status_code == 200

    def test_what_the_protocol_refused_is_counted_on_metrics(self, services: Services) -> None:
        """After the tests above: at least one of each, counted where no route ever saw them."""
        metrics = httpx.get(f"{services.gateway}/metrics", headers=operator(), timeout=10).text
        for reason in ("head_timeout", "headers_too_large", "too_many_connections"):
            line = next((row for row in metrics.splitlines()
                         if row.startswith(f'http_connections_refused_total{{reason="{reason}"}}')), None)
            assert line is not None and float(line.split()[-1]) >= 1, (reason, line)
