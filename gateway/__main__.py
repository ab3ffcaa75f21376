"""`python -m gateway` (or `lookalike serve gateway`): the web page and the public API,
on GATEWAY_HOST:GATEWAY_PORT."""

import sys

from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import GatewaySettings
from lookalike.heap_trim import mmap_large_buffers
from lookalike.serving import service_program


def create_served_app(settings: GatewaySettings) -> FastAPI:
    """The app, in a process of its own: there, upload bodies get their own mappings (not in a test's process)."""
    mmap_large_buffers()
    return create_app(settings)


PROGRAM = service_program("gateway", GatewaySettings, create_served_app, prog="python -m gateway")

if __name__ == "__main__":
    sys.exit(PROGRAM.main())
