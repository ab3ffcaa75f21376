"""The classifier's HTTP routes: image bytes in, category and embedding out."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
import numpy as np
import torch
from fastapi import FastAPI, Query, Request

from classifier_service.batching import MicroBatcher, power_of_two_sizes
from classifier_service.settings import ClassifierSettings
from lookalike.contracts import Box, ClassifierReadiness, ClassifyResponse, encode_embedding
from lookalike.service import create_service, error_responses, from_state, metrics_of, state_getter
from lookalike.upload_guard import install_upload_guard
from lookalike.uploads import read_body
from lookalike.vision.classifier import Classification, Classifier
from lookalike.vision.embedder import Embedder
from lookalike.vision.preprocess import load_model_input

Batcher = MicroBatcher[np.ndarray, Classification]
ClassifierDep = Annotated[Classifier, from_state("classifier", Classifier)]
BatcherDep = Annotated[Batcher, from_state("batcher", MicroBatcher)]
DecodeLimiterDep = Annotated[anyio.CapacityLimiter, from_state("decode_limiter", anyio.CapacityLimiter)]


def create_app(settings: ClassifierSettings | None = None) -> FastAPI:
    settings = settings or ClassifierSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cores = len(os.sched_getaffinity(0))
        torch.set_num_threads(settings.threads or cores)
        sizes = power_of_two_sizes(settings.max_batch)
        classifier = Classifier(Embedder(settings.weights, settings.precision, fused=settings.fused), settings.index,
                                threads=settings.threads or cores, warm_up_sizes=sizes)
        classifier.served.load_at_start()
        metrics = metrics_of(app)
        batcher: Batcher = MicroBatcher(
            classifier.classify_batch, max_batch=settings.max_batch, sizes=sizes,
            max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
            on_batch=metrics.histogram("classifier_batch_size", "Images per forward pass.",
                                       range(1, settings.max_batch + 1)).observe)
        metrics.gauge("classifier_queue_length", "Images waiting for a forward pass.", lambda: batcher.queue_length)
        # About 3 s, so that no shopper waits for a compilation and memory stays flat from here on. An int8
        # model is warmed up as it loads; the torch one then serves only after a reload to a version without one.
        if classifier.loaded is None or classifier.loaded.embedder is classifier.embedder:
            await batcher.on_inference_thread(lambda: classifier.embedder.warm_up(batcher.sizes))
        batcher.start()
        app.state.classifier, app.state.batcher = classifier, batcher
        app.state.decode_limiter = anyio.CapacityLimiter(settings.decode_threads or cores)
        yield
        await batcher.stop()

    async def readiness(classifier: ClassifierDep) -> ClassifierReadiness:
        loaded = classifier.loaded
        return ClassifierReadiness(
            ready=loaded is not None,
            reason=classifier.not_ready_reason,
            model=loaded.embedder.info if loaded else classifier.embedder.info,
            categories=loaded.head.categories if loaded else [],
            index_version=loaded.manifest.version if loaded else None,
            int8_gate=loaded.manifest.int8.gate if loaded and loaded.manifest.int8 else None,
            warnings=list(loaded.warnings) if loaded else [],
        )

    app = create_service(
        "Lookalike classifier", lifespan=lifespan, readiness=readiness, readiness_model=ClassifierReadiness,
        readiness_doc="Ready when the model is loaded and the index's category head matches it.",
        reload=state_getter("classifier", Classifier))
    install_upload_guard(app, settings.upload_limits, metrics_of(app))

    @app.post(
        "/v1/classify", response_model=ClassifyResponse, responses=error_responses(400, 408, 413, 415, 422, 503),
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def classify(request: Request, classifier: ClassifierDep, batcher: BatcherDep,
                       decode_limiter: DecodeLimiterDep,
                       box: str | None = Query(None, description="x0,y0,x1,y1: fractions of the upright photo "
                                               "to crop to before preprocessing.")) -> ClassifyResponse:
        """Classify one image, sent as the raw request body, and return its embedding."""
        started = time.perf_counter()
        region = Box.parse(box) if box else None
        data = await read_body(request, settings.max_upload_bytes)
        with batcher.on_the_way():
            image = await anyio.to_thread.run_sync(
                lambda: load_model_input(data, classifier.embedder.preprocessing, max_pixels=settings.max_pixels,
                                         box=region),
                limiter=decode_limiter)
        decoded = time.perf_counter()
        result = await batcher.submit(image)
        done = time.perf_counter()
        return ClassifyResponse(
            category=result.category,
            confidence=result.probabilities[result.category],
            probabilities=result.probabilities,
            embedding=encode_embedding(result.embedding),
            model=result.model,
            index_version=result.index_version,
            timings_ms={"decode": (decoded - started) * 1000, "forward": (done - decoded) * 1000},
        )

    return app
