"""Finding a service's replicas: names resolved to one URL per address, handed out in turn."""

from __future__ import annotations

import pytest

from lookalike.replicas import ReplicaSet, expand, split_urls

pytestmark = pytest.mark.anyio


def test_several_base_urls_may_be_given_comma_separated() -> None:
    assert split_urls(" http://a:1/, http://b:2 ,") == ["http://a:1", "http://b:2"]


def test_a_name_becomes_one_url_per_address_and_localhost_means_ipv4() -> None:
    assert expand("http://localhost:8123") == ["http://127.0.0.1:8123"]


def test_addresses_and_https_urls_are_kept_as_they_are() -> None:
    assert expand("http://10.0.0.7:8000/") == ["http://10.0.0.7:8000"]
    assert expand("https://localhost:8443") == ["https://localhost:8443"]


def test_a_name_that_does_not_resolve_is_kept_so_the_request_fails_with_its_name() -> None:
    assert expand("http://no-such-host.invalid:8000") == ["http://no-such-host.invalid:8000"]


async def test_replicas_take_turns_and_each_request_can_fall_back_to_the_others() -> None:
    replicas = ReplicaSet(["http://127.0.0.1:1", "http://localhost:2", "http://127.0.0.1:1"])
    assert await replicas.endpoints() == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    first, second, third = [await replicas.in_turn() for _ in range(3)]
    assert first == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert second == ["http://127.0.0.1:2", "http://127.0.0.1:1"]
    assert third == first
