"""`python -m gateway`: serve the web page and the public API on GATEWAY_HOST:GATEWAY_PORT."""

from gateway.settings import GatewaySettings
from lookalike.serving import serve

if __name__ == "__main__":
    settings = GatewaySettings()
    serve("gateway.app:create_app", settings.host, settings.port)
