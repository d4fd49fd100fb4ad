"""The HTTP floor: a bare ASGI app that reads the body and answers a constant.

Served by the same uvicorn (uvloop + httptools) as every other system, so the gap between this
and a system is what that system does per request.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]

_BODY = b'{"predictions":[0]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
