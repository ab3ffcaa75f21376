"""The classifier's app: the model and its micro-batcher, its readiness, and its route."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from classifier_service.batching import MicroBatcher, power_of_two_sizes
from classifier_service.routes import Batcher, BatcherDep, ClassifierDep, router
from classifier_service.settings import ClassifierSettings
from lookalike.contracts import ClassifierReadiness
from lookalike.service import create_service, metrics_of, state_getter
from lookalike.settings import InternalAccess
from lookalike.upload_guard import install_upload_guard
from lookalike.vision.classifier import Classifier


async def readiness(classifier: ClassifierDep, batcher: BatcherDep) -> ClassifierReadiness:
    """Ready with a model and an index loaded, and a micro-batcher that runs (it is restarted if it dies, up to a point)."""
    loaded = classifier.loaded
    return ClassifierReadiness(
        ready=loaded is not None and batcher.broken is None,
        reason=batcher.broken or classifier.not_ready_reason,
        model=loaded.embedder.info if loaded else None,
        categories=loaded.head.categories if loaded else [],
        index_version=loaded.manifest.version if loaded else None,
        int8_gate=loaded.manifest.int8.gate if loaded and loaded.manifest.int8 else None,
        warnings=list(loaded.warnings) if loaded else [],
    )


def create_app(settings: ClassifierSettings | None = None, internal: InternalAccess | None = None) -> FastAPI:
    settings = settings or ClassifierSettings()
    internal = internal or InternalAccess()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cores = len(os.sched_getaffinity(0))
        sizes = power_of_two_sizes(settings.max_batch)
        classifier = Classifier(settings.index, weights=settings.weights, precision=settings.precision,
                                threads=settings.threads or cores, warm_up_sizes=sizes,
                                memory_arena=settings.memory_arena)
        # Loading the version's graph (and one pass per batch size) takes about a second, off the event loop.
        await anyio.to_thread.run_sync(classifier.served.load_at_start)
        metrics = metrics_of(app)
        batcher: Batcher = MicroBatcher(
            classifier.classify_batch, max_batch=settings.max_batch, sizes=sizes,
            max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
            on_batch=metrics.histogram("classifier_batch_size", "Images per forward pass.",
                                       range(1, settings.max_batch + 1)).observe)
        metrics.gauge("classifier_queue_length", "Images waiting for a forward pass.", lambda: batcher.queue_length)
        batcher.start()
        app.state.settings = settings
        app.state.classifier, app.state.batcher = classifier, batcher
        app.state.decode_limiter = anyio.CapacityLimiter(settings.decode_threads or cores)
        yield
        await batcher.stop()

    app = create_service(
        "Lookalike classifier", lifespan=lifespan, readiness=readiness, readiness_model=ClassifierReadiness,
        readiness_doc="Ready when the model is loaded and the index's category head matches it.",
        reload=state_getter("classifier", Classifier), internal_token=internal.internal_token)
    install_upload_guard(app, settings.upload_limits, metrics_of(app))
    app.include_router(router)
    return app
