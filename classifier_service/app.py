"""The classifier's HTTP routes: image bytes in, category and embedding out."""

from __future__ import annotations

import os
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio
import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from classifier_service.batching import MicroBatcher, power_of_two_sizes
from classifier_service.model import Classification, Classifier, Embedder
from classifier_service.preprocess import load_model_input
from classifier_service.settings import ClassifierSettings
from lookalike.contracts import ClassifierReadiness, ClassifyResponse, ReloadResponse, encode_embedding
from lookalike.errors import ApiError, ErrorEnvelope, install_error_handlers
from lookalike.observability import install_observability
from lookalike.uploads import read_body

ERRORS = {400: {"model": ErrorEnvelope}, 413: {"model": ErrorEnvelope}, 415: {"model": ErrorEnvelope},
          422: {"model": ErrorEnvelope}, 503: {"model": ErrorEnvelope}}


def create_app(settings: ClassifierSettings | None = None) -> FastAPI:
    settings = settings or ClassifierSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cores = len(os.sched_getaffinity(0))
        torch.set_num_threads(settings.threads or cores)
        classifier = Classifier(Embedder(settings.weights, settings.precision, fused=settings.fused), settings.index)
        try:
            classifier.reload()
        except ApiError:
            pass  # not ready; /readyz says why, and /v1/reload retries
        batcher: MicroBatcher[np.ndarray, Classification] = MicroBatcher(
            classifier.classify_batch, max_batch=settings.max_batch, sizes=power_of_two_sizes(settings.max_batch),
            max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
            on_batch=metrics.histogram("classifier_batch_size", "Images per forward pass.",
                                       range(1, settings.max_batch + 1)).observe)
        metrics.gauge("classifier_queue_length", "Images waiting for a forward pass.", lambda: batcher.queue_length)
        # About 3 s, so that no shopper waits for a compilation and memory stays flat from here on.
        await batcher.on_inference_thread(lambda: classifier.embedder.warm_up(batcher.sizes))
        batcher.start()
        app.state.classifier, app.state.batcher = classifier, batcher
        app.state.decode_limiter = anyio.CapacityLimiter(settings.decode_threads or cores)
        yield
        await batcher.stop()

    app = FastAPI(title="Lookalike classifier", version="1", lifespan=lifespan)
    install_error_handlers(app)
    metrics = install_observability(app)

    @app.post(
        "/v1/classify", response_model=ClassifyResponse, responses=ERRORS,
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def classify(request: Request) -> ClassifyResponse:
        """Classify one image, sent as the raw request body, and return its embedding."""
        classifier: Classifier = request.app.state.classifier
        started = time.perf_counter()
        data = await read_body(request, settings.max_upload_bytes)
        batcher: MicroBatcher[np.ndarray, Classification] = request.app.state.batcher
        with batcher.on_the_way():
            image = await anyio.to_thread.run_sync(
                lambda: load_model_input(data, classifier.embedder.preprocessing, max_pixels=settings.max_pixels),
                limiter=request.app.state.decode_limiter)
        decoded = time.perf_counter()
        result = await batcher.submit(image)
        done = time.perf_counter()
        return ClassifyResponse(
            category=result.category,
            confidence=result.probabilities[result.category],
            probabilities=result.probabilities,
            embedding=encode_embedding(result.embedding),
            model=classifier.embedder.info,
            index_version=result.index_version,
            timings_ms={"decode": (decoded - started) * 1000, "forward": (done - decoded) * 1000},
        )

    @app.post("/v1/reload", response_model=ReloadResponse, responses=ERRORS)
    async def reload(request: Request) -> ReloadResponse:
        """Switch to the index's current version; requests in flight finish on the old one."""
        version, previous = await anyio.to_thread.run_sync(request.app.state.classifier.reload)
        return ReloadResponse(index_version=version, previous_version=previous)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=ClassifierReadiness, responses={503: {"model": ClassifierReadiness}})
    async def readyz(request: Request) -> JSONResponse:
        """Ready when the model is loaded and the index's category head matches it."""
        classifier: Classifier = request.app.state.classifier
        loaded = classifier.loaded
        body = ClassifierReadiness(
            ready=loaded is not None,
            reason=classifier.not_ready_reason,
            model=classifier.embedder.info,
            categories=loaded.head.categories if loaded else [],
            index_version=loaded.manifest.version if loaded else None,
        )
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    return app
