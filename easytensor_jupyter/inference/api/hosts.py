"""Answer only requests addressed to one of the server's own names (the Host header).

A web page the user opens can make the browser call a loopback server through DNS rebinding:
its own name first resolves to the attacker, then to 127.0.0.1, and the browser sends the
page's name as Host while treating the answers as same-origin, so ``/metrics`` and
``/openapi.json`` would be readable. A rebound name is never one of the server's, so checking
Host shuts that out. An IP literal cannot be rebound, so on a server bound to every interface
any address is accepted, along with the machine's hostname; other names come from
``--allowed-host``, and ``*`` turns the check off.
"""

from __future__ import annotations

import ipaddress
import socket

from starlette.types import ASGIApp, Receive, Scope, Send

from easytensor_jupyter.inference.api.errors import error_response

__all__ = ["HostCheck", "HostRule", "host_name"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_SHOWN = 100


def host_name(header: str) -> str | None:
    """The name in a Host header value, without port, brackets, case or a final dot.

    ``None`` when the value is not a name with an optional numeric port.
    """
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        return value[1:end]
    if value.count(":") > 1:
        return value
    name, sep, port = value.partition(":")
    if sep and not port.isdigit():
        return None
    return name.rstrip(".") if name not in ("", ".") else None


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return None


class HostRule:
    """Which Host names this server answers."""

    def __init__(self, bind_host: str, extra: tuple[str, ...] = ()) -> None:
        self.open = "*" in extra
        bound = host_name(f"[{bind_host}]" if ":" in bind_host else bind_host) or ""
        self.any_address = bind_host in _WILDCARDS
        names = set(_LOOPBACK_NAMES)
        if bound and bind_host not in _WILDCARDS:
            names.add(bound)
        if self.any_address:
            hostname = socket.gethostname().lower().rstrip(".")
            names.update({hostname, hostname.split(".", 1)[0]} - {""})
        for item in extra:
            name = host_name(item)
            if name and item != "*":
                names.add(name)
        self.names = frozenset(names)

    def allows(self, header: str | None) -> bool:
        if self.open or header is None:
            return True
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        address = _ip(name)
        return address is not None and (address.is_loopback or self.any_address)

    def describe(self) -> str:
        if self.open:
            return "any Host (--allowed-host '*')"
        shown = sorted(self.names) + (["any IP address"] if self.any_address else [])
        return ", ".join(shown)


class HostCheck:
    """The outermost ASGI layer: a request with a foreign Host gets 400 and nothing else.

    A request without a Host header (HTTP/1.0) passes: browsers always send one.
    """

    def __init__(self, app: ASGIApp, rule: HostRule) -> None:
        self.app = app
        self.rule = rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.rule.open:
            header = None
            for key, value in scope["headers"]:
                if key == b"host":
                    header = value.decode("latin-1")
                    break
            if not self.rule.allows(header):
                shown = (header or "")[:_SHOWN]
                response = error_response(
                    400,
                    "host_not_allowed",
                    f"this server does not answer to the Host {shown!r}; if that name is "
                    f"really this server's, start it with --allowed-host {host_name(shown) or shown}",
                    {"host": shown},
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
