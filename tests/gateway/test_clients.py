"""Clients counted as rate limits and votes need them: by address, and by network."""

import ipaddress

from gateway.clients import limit_key, network_key, network_of

OFFICE_A, OFFICE_B = ipaddress.ip_address("203.0.113.7"), ipaddress.ip_address("203.0.113.99")
PHONE = ipaddress.ip_address("2001:db8:1:2:aaaa::1")
SAME_PHONE_PREFIX = ipaddress.ip_address("2001:db8:1:2:bbbb::9")


def test_rate_limits_count_each_ipv4_address_and_each_ipv6_prefix() -> None:
    assert limit_key(OFFICE_A) != limit_key(OFFICE_B)
    assert limit_key(PHONE) == limit_key(SAME_PHONE_PREFIX) == "2001:db8:1:2::/64"


def test_votes_count_the_network_an_address_is_in() -> None:
    assert network_of(OFFICE_A) == network_of(OFFICE_B) == "203.0.113.0/24"
    assert network_of(PHONE) == "2001:db8:1:2::/64"


def test_the_stored_network_key_is_salted_and_names_no_network() -> None:
    key = network_key(OFFICE_A, b"salt")
    assert key == network_key(OFFICE_B, b"salt") != network_key(OFFICE_A, b"pepper")
    assert "203" not in key and len(key) == 32
