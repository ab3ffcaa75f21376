"""`python -m classifier_service` (or `lookalike serve classifier`): photo in, embedding and category
probabilities out, on CLASSIFIER_HOST:CLASSIFIER_PORT."""

import sys

from fastapi import FastAPI

from classifier_service.app import create_app
from classifier_service.settings import ClassifierSettings
from lookalike.heap_trim import mmap_large_buffers
from lookalike.serving import service_program


def create_served_app(settings: ClassifierSettings) -> FastAPI:
    """The app, in a process of its own: there, ONNX Runtime's buffers of 1 MiB and more (the model as it loads,
    each pass's activations) get their own mappings and go back to the kernel when freed. Measured: 120 MB
    less RSS for the loaded fp32 graph and 210 MB less after a few passes (docs/performance.md)."""
    mmap_large_buffers()
    return create_app(settings)


PROGRAM = service_program("classifier", ClassifierSettings, create_served_app, prog="python -m classifier_service")

if __name__ == "__main__":
    sys.exit(PROGRAM.main())
