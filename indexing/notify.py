"""Tell running services that a new index version is published, and learn which version each now holds."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from pydantic import SecretStr, ValidationError

from lookalike.contracts import Readiness
from lookalike.replicas import expand


class HeldVersion(Readiness):
    """The one field of a service's /readyz that pruning needs."""

    index_version: str | None = None


@dataclass(frozen=True)
class Reloaded:
    """How one replica's reload went, and the index version it holds now (None: not reached, or holds none)."""

    url: str
    line: str
    holds: str | None


def reload_services(urls: list[str], token: SecretStr | None, timeout_s: float = 30.0,
                    transport: httpx.BaseTransport | None = None) -> list[Reloaded]:
    """POST /v1/reload to each service, to every replica behind its name, with `Authorization: Bearer <token>`.

    A replica that refuses (a mismatched model, a wrong token) is asked its /readyz, so the job knows
    which version it still serves and pruning keeps it. `transport` stands in for the network in tests.
    """
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}
    with httpx.Client(timeout=timeout_s, transport=transport, headers=headers) as client:
        return [_reload(client, replica) for base in urls for replica in expand(base)]


def notify_reload(urls: list[str], token: SecretStr | None = None, timeout_s: float = 30.0,
                  transport: httpx.BaseTransport | None = None) -> list[str]:
    """One line per replica saying how its reload went."""
    return [reloaded.line for reloaded in reload_services(urls, token, timeout_s, transport)]


def _reload(client: httpx.Client, url: str) -> Reloaded:
    try:
        response = client.post(url + "/v1/reload")
    except httpx.HTTPError as exc:
        return Reloaded(url, f"{url}: not reached ({exc.__class__.__name__}); it will load the new index when it "
                        "restarts", None)
    if response.status_code == 200:
        version = str(response.json()["index_version"])
        return Reloaded(url, f"{url}: now serving {version}", version)
    hint = " (set LOOKALIKE_INTERNAL_TOKEN to the services' token)" if response.status_code == 401 else ""
    return Reloaded(url, f"{url}: reload refused ({response.status_code}){hint}: {response.text[:300]}",
                    _held(client, url))


def _held(client: httpx.Client, url: str) -> str | None:
    try:
        return HeldVersion.model_validate_json(client.get(url + "/readyz").content).index_version
    except (httpx.HTTPError, ValidationError):
        return None
