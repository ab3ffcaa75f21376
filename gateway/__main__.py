"""`python -m gateway` (or `lookalike serve gateway`): the web page and the public API,
on GATEWAY_HOST:GATEWAY_PORT."""

import sys

from gateway.app import create_app
from gateway.settings import GatewaySettings
from lookalike.serving import service_program

PROGRAM = service_program("gateway", GatewaySettings, create_app, prog="python -m gateway")

if __name__ == "__main__":
    sys.exit(PROGRAM.main())
