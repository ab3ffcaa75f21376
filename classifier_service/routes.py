"""The classifier's route: image bytes in, category and embedding out."""

from __future__ import annotations

import time
from typing import Annotated

import anyio
import numpy as np
from fastapi import APIRouter, Query, Request

from classifier_service.batching import MicroBatcher
from classifier_service.settings import ClassifierSettings
from lookalike.contracts import Box, ClassifyResponse, encode_embedding
from lookalike.service import error_responses, from_state
from lookalike.uploads import read_body
from lookalike.vision.classifier import Classification, Classifier
from lookalike.vision.preprocess import load_model_input

Batcher = MicroBatcher[np.ndarray, Classification]
ClassifierDep = Annotated[Classifier, from_state("classifier", Classifier)]
BatcherDep = Annotated[Batcher, from_state("batcher", MicroBatcher)]
DecodeLimiterDep = Annotated[anyio.CapacityLimiter, from_state("decode_limiter", anyio.CapacityLimiter)]
SettingsDep = Annotated[ClassifierSettings, from_state("settings", ClassifierSettings)]

router = APIRouter()


@router.post(
    "/v1/classify", response_model=ClassifyResponse, responses=error_responses(400, 408, 413, 415, 422, 503),
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}}}}},
)
async def classify(request: Request, classifier: ClassifierDep, batcher: BatcherDep,
                   decode_limiter: DecodeLimiterDep, settings: SettingsDep,
                   box: str | None = Query(None, description="x0,y0,x1,y1: fractions of the upright photo "
                                           "to crop to before preprocessing.")) -> ClassifyResponse:
    """Classify one image, sent as the raw request body, and return its embedding."""
    started = time.perf_counter()
    region = Box.parse(box) if box else None
    data = await read_body(request, settings.max_upload_bytes)
    with batcher.on_the_way():
        image = await anyio.to_thread.run_sync(
            lambda: load_model_input(data, classifier.preprocessing, max_pixels=settings.max_pixels,
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
