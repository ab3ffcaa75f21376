"""Steering a photo's search: the bytes the page uploads, the forward passes six steers cost, and their speed.

A shopper searches a photo once, then steers: another category, a filter, a second filter, words,
Refine, a cutoff. The first search uploads; the steers name the photo's handle and send no body.
Measured against the running stack, one request at a time (the ratio) and at concurrency 16 (the
gateway's and the similarity service's CPU per steered search). The page's upload for a 12 MP
phone photo is measured in Chromium (Debian's /usr/bin/chromium, driven by Playwright).
"""

from __future__ import annotations

import asyncio
import io
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from PIL import Image

from bench.load import LoadFigures, Upload, multipart_upload, run_load

CHROMIUM = Path("/usr/bin/chromium")
REGION = "0.05,0.05,0.95,0.95"  # large enough for a small query photo to keep 224 px
PhotoParams = dict[str, str | float | int | list[str]]


@dataclass
class SteeringFigures:
    forward_passes: int
    """The classifier's /v1/classify requests for one photo searched once and steered six times."""
    photo_bytes_sent_by_steers: int
    first_ms: list[float] = field(default_factory=list)
    steered_ms: list[float] = field(default_factory=list)
    region_by_handle_ms: list[float] = field(default_factory=list)
    region_upload_again_ms: list[float] = field(default_factory=list)
    region_upload_bytes: int = 0
    """What the page would send for a new region if the gateway kept no photo: the photo again."""
    upload_bytes_12mp_page: int | None = None
    steered_load: LoadFigures | None = None

    @property
    def latency_ratio(self) -> float:
        return statistics.median(self.steered_ms) / statistics.median(self.first_ms)

    def steered_core_ms(self) -> float | None:
        f = self.steered_load
        return f.cpu_ms.get("gateway", 0) + f.cpu_ms.get("similarity", 0) if f and f.cpu_ms else None

    def summary(self) -> dict[str, object]:
        def median(values: list[float]) -> float | None:
            return round(statistics.median(values), 2) if values else None

        return {"first_search_p50_ms": median(self.first_ms), "steered_search_p50_ms": median(self.steered_ms),
                "first_searches": len(self.first_ms), "steered_searches": len(self.steered_ms),
                "photo_bytes_sent_by_steers": self.photo_bytes_sent_by_steers,
                "region": {"by_handle_p50_ms": median(self.region_by_handle_ms),
                           "upload_again_p50_ms": median(self.region_upload_again_ms),
                           "upload_again_bytes": self.region_upload_bytes, "by_handle_bytes": 0},
                "steered_load": self.steered_load.summary() if self.steered_load else None}


def classify_count(classifier: str) -> float:
    """Answered /v1/classify requests on the classifier's /metrics: one forward pass each."""
    text = httpx.get(f"{classifier}/metrics").text
    return sum(float(v) for v in re.findall(r'http_requests_total\{[^}]*route="/v1/classify"[^}]*\} (\S+)', text))


def six_steers(first: dict[str, Any], catalog: dict[str, Any]) -> list[PhotoParams]:
    """What a shopper does, one after another: each steer keeps the ones before it (but the chip's category)."""
    other = next(c for c in sorted(first["probabilities"]) if c != first["category"])
    filters = [f"{c['name']}={c['values'][0]}" if c["kind"] == "text" else f"{c['name']}>={c['min']}"
               for c in catalog.get("columns", []) if c["kind"] == "number" or c.get("values")][:2]
    results = first["results"]
    liked = [r["id"] for r in results[:1]]
    steps: list[PhotoParams] = [{"category": other}]
    for n in range(1, 3):
        steps.append({"category": other, "where": filters[:n]})
    steps.append({**steps[-1], "q": other})
    steps.append({**steps[-1], "like": liked})
    steps.append({**steps[-1], "min_score": 0.5})
    return steps


def _timed_post(http: httpx.Client, url: str, **kwargs: object) -> tuple[httpx.Response, float]:
    sent = time.perf_counter()
    response = http.post(url, **kwargs)  # type: ignore[arg-type]
    return response, (time.perf_counter() - sent) * 1000


def measure_steering(gateway: str, classifier: str, photos: list[bytes],
                     cpu_by_process: Callable[[], dict[str, float]], seconds: float, warmup: float) -> SteeringFigures:
    """Each photo searched once and steered six times; a new region by handle and by uploading again;
    then steered searches at concurrency 16, for their CPU."""
    search = f"{gateway}/api/v1/search"
    with httpx.Client(timeout=60) as http:
        catalog = http.get(f"{gateway}/api/v1/catalog").json()
        figures = SteeringFigures(forward_passes=0, photo_bytes_sent_by_steers=0)
        steered: list[Upload] = []
        for n, photo in enumerate(photos):
            before = classify_count(classifier)
            first, took = _timed_post(http, search, params={"k": 10}, files={"image": ("photo.jpg", photo, "image/jpeg")})
            first.raise_for_status()
            figures.first_ms.append(took)
            handle = first.json()["photo"]
            for params in six_steers(first.json(), catalog):
                answer, took = _timed_post(http, search, params={"photo": handle, "k": 10, **params})
                answer.raise_for_status()
                figures.steered_ms.append(took)
                figures.photo_bytes_sent_by_steers += len(answer.request.content)
                steered.append(Upload(b"", "", "?" + urlencode({"photo": handle, "k": 10, **params}, doseq=True)))
            if n == 0:
                figures.forward_passes = round(classify_count(classifier) - before)
            by_handle, took_by_handle = _timed_post(http, search, params={"photo": handle, "box": REGION})
            upload = multipart_upload(photo)
            again, took_again = _timed_post(http, search, params={"box": REGION}, content=upload.body,
                                            headers={"content-type": upload.content_type})
            if by_handle.status_code == again.status_code == 200:  # else a photo too small for the region
                figures.region_by_handle_ms.append(took_by_handle)
                figures.region_upload_again_ms.append(took_again)
                figures.region_upload_bytes = max(figures.region_upload_bytes, len(upload.body))
    figures.steered_load = asyncio.run(run_load(search, steered, 16, seconds, warmup, cpu_by_process))
    return figures


def sideways_12mp(photo: bytes) -> bytes:
    """A 12 MP landscape sensor image of the photo whose EXIF says "rotate 90°", as a phone saves one."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").resize((4032, 3024)).save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def page_upload_bytes(gateway: str, photo: bytes) -> int | None:
    """The bytes of the page's search request for a 12 MP phone photo, in Chromium; None without Chromium."""
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import FilePayload, Request, Route, sync_playwright

    sent: list[int] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()

        def count(route: Route, request: Request) -> None:  # a route sees the multipart body; the request event not
            sent.append(len(request.post_data_buffer or b""))
            route.continue_()

        page.route("**/api/v1/search?*", count)
        page.goto(gateway + "/")
        with page.expect_response(lambda r: "/api/v1/search?" in r.url, timeout=120_000):
            page.set_input_files("#photo", files=FilePayload(name="IMG_0001.jpg", mimeType="image/jpeg",
                                                             buffer=sideways_12mp(photo)))
        browser.close()
    return sent[0] if sent else None
