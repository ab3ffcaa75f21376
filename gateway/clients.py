"""Who is really there: the client's address, and the two ways the gateway groups clients.

The address is the socket's peer, or, behind a proxy named in FORWARDED_ALLOW_IPS, the one that
proxy put in `X-Forwarded-For` (uvicorn's ProxyHeadersMiddleware rewrites it before any route
runs; `create_app` installs it from the settings). Two groupings, for two jobs:

- `limit_key`: one bucket per IPv4 address or IPv6 /64 (a home's or phone's whole prefix), for
  rate limits: a shop's customers behind one office /24 each keep their own bucket.
- `network_key`: a salted hash of the IPv4 /24 or IPv6 /64, for learning from votes: twenty
  sessions from one network count as one voice. The salt keeps the stored key from naming a network.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from fastapi import Request

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
UNKNOWN = ipaddress.IPv4Address("0.0.0.0")


def client_address(request: Request) -> Address:
    """The client's address (after trusted proxies); 0.0.0.0 where the server gives none (in-process tests)."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return UNKNOWN
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _prefix(address: Address, ipv4_bits: int) -> str:
    bits = ipv4_bits if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def limit_key(address: Address) -> str:
    """The rate limits' bucket: the IPv4 address itself, or the IPv6 /64."""
    return _prefix(address, 32)


def network_of(address: Address) -> str:
    """The network a vote counts for: the IPv4 /24, or the IPv6 /64."""
    return _prefix(address, 24)


def network_key(address: Address, salt: bytes) -> str:
    """What is stored for a vote's network: 32 hex characters of a salted hash, never the network itself."""
    return hmac.new(salt, network_of(address).encode(), hashlib.sha256).hexdigest()[:32]
