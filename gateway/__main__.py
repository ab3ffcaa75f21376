"""`python -m gateway` (or `lookalike serve gateway`): serve the web page and the public API on GATEWAY_HOST:GATEWAY_PORT.

Flags and environment variables come from gateway/settings.py; `--help` lists them.
"""

import sys
from functools import partial

from gateway.app import create_app
from gateway.settings import GatewaySettings
from lookalike.serving import serve
from lookalike.settings import read_command_line


def serve_gateway(settings: GatewaySettings) -> int:
    serve("gateway", partial(create_app, settings), settings.host, settings.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve_gateway(read_command_line(GatewaySettings, argv, prog="python -m gateway"))


if __name__ == "__main__":
    sys.exit(main())
