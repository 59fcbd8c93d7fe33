from __future__ import annotations

import ipaddress

import pytest

from lms.api.middlewares import client_ip

pytestmark = pytest.mark.no_services
PROXIES = [ipaddress.ip_network("10.0.0.0/8")]


def test_forwarded_for_is_ignored_from_an_untrusted_peer() -> None:
    assert client_ip("203.0.113.9", "1.2.3.4", PROXIES) == "203.0.113.9"


def test_forwarded_for_is_used_from_a_trusted_proxy() -> None:
    assert client_ip("10.0.0.2", "198.51.100.7", PROXIES) == "198.51.100.7"


def test_spoofed_leftmost_entries_are_skipped() -> None:
    # The client sent "X-Forwarded-For: 1.1.1.1"; our proxies appended the real address.
    assert client_ip("10.0.0.2", "1.1.1.1, 198.51.100.7, 10.0.0.3", PROXIES) == "198.51.100.7"
