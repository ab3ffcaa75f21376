"""Bad input against the running gateway, one row per case: the right status, a JSON error, still ready.

Every file is made at run time (the damaged ones from a real photo); nothing here is committed.
"""

from __future__ import annotations

import http.client
import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support import Services

pytestmark = pytest.mark.usefixtures("services")

MB = 1_000_000
# What no public message may show: where things live on disk, or the code behind them.
LEAKS = ("/tmp", "/work", "/home", "/etc", "Traceback", ".py", "site-packages")


def encoded(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(side: int = 30_000) -> bytes:
    """A valid 1-bit PNG of side×side pixels: ~100 kB on the wire, 900 MP once decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def png_with_bad_crc(photo: Image.Image) -> bytes:
    data = bytearray(encoded(photo.resize((64, 64)), "PNG"))
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    data[at + 4 + length] ^= 0xFF  # first byte of the IDAT chunk's CRC
    return bytes(data)


def exif_rotated(photo: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    return encoded(photo, "JPEG", exif=exif.tobytes())


def animated_gif(photo: Image.Image) -> bytes:
    frames = [photo.resize((96, 64)).convert("P"), photo.resize((96, 64)).rotate(180).convert("P")]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def sixteen_bit_png() -> bytes:
    img = Image.new("I;16", (64, 64))
    img.putdata([(x * 1024 + y * 16) % 65536 for y in range(64) for x in range(64)])
    return encoded(img, "PNG")


def heic(photo: Image.Image) -> bytes:
    return encoded(photo, "HEIF")


@dataclass(frozen=True)
class Case:
    """One request to POST /api/v1/search and what it must get."""

    name: str
    status: int
    code: str | None = None  # the error code, for 4xx
    file: Callable[[Image.Image, bytes], bytes] | None = None  # (real photo, its JPEG bytes) -> upload
    params: dict[str, object] = field(default_factory=dict)
    raw: Callable[[], tuple[bytes, str]] | None = None  # a non-multipart body and its content type
    field_name: str = "image"


CASES = [
    Case("an empty body", 415, "unsupported_media_type", raw=lambda: (b"", "")),
    Case("an empty multipart body", 400, None, raw=lambda: (b"", "multipart/form-data; boundary=xyz")),
    Case("an empty image field", 400, "empty_upload", file=lambda p, j: b""),
    Case("a missing field", 400, "missing_field", file=lambda p, j: j, field_name="photo"),
    Case("a wrong content-type", 415, "unsupported_media_type", raw=lambda: (b'{"image": "x"}', "application/json")),
    Case("a text file named .jpg", 415, "not_an_image", file=lambda p, j: b"these are my holiday notes\n" * 20),
    Case("a truncated JPEG", 422, "broken_image", file=lambda p, j: j[: len(j) // 2]),
    Case("a PNG with a corrupt CRC", 422, "broken_image", file=lambda p, j: png_with_bad_crc(p)),
    Case("a 1x1 image", 422, "image_too_small", file=lambda p, j: encoded(Image.new("RGB", (1, 1)), "PNG")),
    Case("a 30000x30000 PNG bomb", 413, "too_many_pixels", file=lambda p, j: png_bomb()),
    Case("a 50 MB file", 413, "upload_too_large", file=lambda p, j: j + bytes(50 * MB)),
    Case("a format we do not take (PPM)", 415, "not_an_image", file=lambda p, j: encoded(p, "PPM")),
    Case("an animated GIF", 200, file=lambda p, j: animated_gif(p)),
    Case("a CMYK JPEG", 200, file=lambda p, j: encoded(p.convert("CMYK"), "JPEG")),
    Case("a 16-bit PNG", 200, file=lambda p, j: sixteen_bit_png()),
    Case("an RGBA PNG", 200, file=lambda p, j: encoded(p.convert("RGBA"), "PNG")),
    Case("an EXIF-rotated photo", 200, file=lambda p, j: exif_rotated(p)),
    Case("a WebP", 200, file=lambda p, j: encoded(p, "WEBP")),
    Case("a BMP", 200, file=lambda p, j: encoded(p, "BMP")),
    Case("a TIFF", 200, file=lambda p, j: encoded(p, "TIFF")),
    Case("a HEIC photo", 200, file=lambda p, j: heic(p)),
    Case("k=0", 422, "invalid_request", file=lambda p, j: j, params={"k": 0}),
    Case("k=10000", 422, "invalid_request", file=lambda p, j: j, params={"k": 10000}),
    Case("an unknown category", 422, "unknown_category", file=lambda p, j: j, params={"category": "wardrobe"}),
]

TRAVERSALS = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
              "..%252F..%252Fetc%252Fpasswd", "....//....//etc/passwd", "..\\..\\etc\\passwd", "%00", "."]


@pytest.fixture(scope="module")
def photo(query_photos: list[tuple[Path, str]]) -> tuple[Image.Image, bytes]:
    path, _ = query_photos[0]
    data = path.read_bytes()
    return Image.open(io.BytesIO(data)).convert("RGB"), data


@pytest.fixture
def still_ready(services: Services) -> Iterator[None]:
    yield
    for name in ("gateway", "classifier", "similarity"):
        assert httpx.get(services.url(name) + "/readyz", timeout=10).status_code == 200, f"{name} not ready"


def send(services: Services, case: Case, photo: tuple[Image.Image, bytes]) -> httpx.Response:
    url = f"{services.gateway}/api/v1/search"
    if case.raw is not None:
        body, content_type = case.raw()
        headers = {"content-type": content_type} if content_type else {}
        return httpx.post(url, params=case.params, content=body, headers=headers, timeout=60)
    assert case.file is not None
    upload = case.file(*photo)
    return httpx.post(url, params=case.params, files={case.field_name: ("photo.jpg", upload, "image/jpeg")}, timeout=60)


def assert_json_error(response: httpx.Response, status: int, code: str | None = None) -> str:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert message and not any(leak in message for leak in LEAKS), message
    return message


@pytest.mark.usefixtures("still_ready")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_input_gets_the_right_status_and_a_json_error(services: Services, case: Case,
                                                               photo: tuple[Image.Image, bytes]) -> None:
    response = send(services, case, photo)
    if case.status == 200:
        assert response.status_code == 200, response.text[:500]
        assert response.json()["results"], "a readable image must be searched"
    else:
        assert_json_error(response, case.status, case.code)


def test_a_refused_format_is_told_which_formats_are_accepted(services: Services,
                                                             photo: tuple[Image.Image, bytes]) -> None:
    for case in (c for c in CASES if c.code == "not_an_image"):
        message = assert_json_error(send(services, case, photo), 415)
        assert all(name in message for name in ("JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF", "HEIC")), message


@pytest.mark.usefixtures("still_ready")
def test_an_upload_streamed_without_a_length_is_cut_off_at_the_limit(services: Services) -> None:
    """No Content-Length to refuse up front: the cap must hold while the body streams in."""
    boundary = "lookalike-boundary"

    def body() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.jpg\"\r\n"
               "Content-Type: image/jpeg\r\n\r\n").encode()
        for _ in range(50):
            yield bytes(MB)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(f"{services.gateway}/api/v1/search", content=body(), timeout=60,
                          headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert_json_error(response, 413, "upload_too_large")


@pytest.mark.usefixtures("still_ready")
@pytest.mark.parametrize("item_id", TRAVERSALS)
@pytest.mark.parametrize("endpoint", ["image", "similar"])
def test_path_traversal_ids_find_no_file(services: Services, item_id: str, endpoint: str) -> None:
    """Sent byte for byte (http.client does not tidy `..` away), to the gateway and the service behind it."""
    for name in ("gateway", "similarity"):
        prefix = "/api/v1/items" if name == "gateway" else "/v1/items"
        connection = http.client.HTTPConnection("127.0.0.1", services.ports[name], timeout=30)
        try:
            connection.request("GET", f"{prefix}/{item_id}/{endpoint}")
            answer = connection.getresponse()
            status, headers, text = answer.status, dict(answer.getheaders()), answer.read().decode("utf-8", "replace")
        finally:
            connection.close()
        assert status in (400, 404), (name, item_id, status, text[:300])
        assert headers["content-type"].startswith("application/json") and "root:" not in text
        assert not any(leak in text for leak in LEAKS[:3]), text
