"""Which Host headers a server answers: its own names in every spelling a client may send
(port, brackets, case, a final dot), nothing a rebinding page could use, and what
``--allowed-host`` adds."""

from __future__ import annotations

import socket

import pytest

from easytensor_jupyter.inference.api.hosts import HostRule, host_name


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("LocalHost", "localhost"),
        ("localhost.:80", "localhost"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("example.com:x", None),
        ("[::1]junk", None),
        ("[::1", None),
        (":80", None),
    ],
)
def test_host_name(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_a_loopback_server_answers_only_its_names() -> None:
    rule = HostRule("127.0.0.1")
    for header in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "127.0.0.2", None):
        assert rule.allows(header), header
    for header in ("evil.example", "evil.example:8000", "10.0.0.5:8000", "", "localhost:abc"):
        assert not rule.allows(header), header


def test_the_bound_address_and_allowed_names() -> None:
    rule = HostRule("10.1.2.3", ("Models.Example.", "[fd00::5]:9000"))
    for header in ("10.1.2.3:8000", "models.example", "MODELS.example:443", "[fd00::5]"):
        assert rule.allows(header), header
    assert not rule.allows("10.1.2.4") and not rule.allows("other.example")
    assert "models.example" in rule.describe()


def test_a_server_on_every_interface_takes_any_address_and_its_hostname() -> None:
    rule = HostRule("0.0.0.0")
    assert rule.allows("192.168.7.9:8000") and rule.allows("[2001:db8::1]:8000")
    assert rule.allows(socket.gethostname())
    assert not rule.allows("evil.example")
    assert "any IP address" in rule.describe()


def test_star_opens_it() -> None:
    rule = HostRule("127.0.0.1", ("*",))
    assert rule.open and rule.allows("evil.example")
