"""The extension's routes behind Jupyter's login, and its answers when the inference server is away.

None of these need a running inference server: the proxy points at a port nobody listens on, so
an authenticated call proves the route exists (a readable 502) and an anonymous one must be
refused before anything is proxied.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]

ROUTES: list[tuple[str, str, str | None]] = [
    ("GET", "status", None),
    ("GET", "models", None),
    ("GET", "models/m1", None),
    ("DELETE", "models/m1", None),
    ("DELETE", "models/m1/versions/2", None),
    ("PUT", "models/m1/default", '{"version": 1}'),
    ("POST", "models/m1/predict", '{"instances": ["hi"]}'),
    ("GET", "models/m1/tokens", None),
    ("POST", "models/m1/tokens", ""),
    ("DELETE", "models/m1/tokens/t1", None),
]


JSON = {"Content-Type": "application/json"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


DEAD_URL = f"http://127.0.0.1:{_closed_port()}"


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"easytensor_jupyter": True}},
        "EasyTensor": {"url": DEAD_URL, "api_key": "et_admin_not_used", "autostart": False},
    }


def _error(exc: HTTPClientError) -> dict[str, Any]:
    assert exc.response is not None
    assert exc.response.headers["Content-Type"].startswith("application/json")
    error: dict[str, Any] = json.loads(exc.response.body)["error"]
    return error


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_anonymous_calls_are_refused(
    jp_fetch: Any, method: str, path: str, body: str | None
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "easytensor",
            "api",
            path,
            method=method,
            body=body,
            headers={"Authorization": "", **JSON},
        )
    assert info.value.code in (401, 403)
    assert _error(info.value)["code"] in ("unauthorized", "forbidden")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_wrong_jupyter_token_is_refused(
    jp_fetch: Any, method: str, path: str, body: str | None
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "easytensor",
            "api",
            path,
            method=method,
            body=body,
            headers={"Authorization": "token not-the-jupyter-token", **JSON},
        )
    assert info.value.code in (401, 403)


@pytest.mark.parametrize(("method", "path", "body"), [r for r in ROUTES if r[1] != "status"])
async def test_unreachable_server_is_a_readable_502(
    jp_fetch: Any, method: str, path: str, body: str | None
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("easytensor", "api", path, method=method, body=body, headers=dict(JSON))
    assert info.value.code == 502
    error = _error(info.value)
    assert error["code"] == "upstream_unreachable"
    assert DEAD_URL in error["message"]
    assert "is it running?" in error["message"]


async def test_status_reports_the_unreachable_server(jp_fetch: Any) -> None:
    response = await jp_fetch("easytensor", "api", "status")
    status = json.loads(response.body)
    assert status["url"] == DEAD_URL
    assert status["connected"] is False
    assert status["embedded"] is False
    assert status["version"] is None
    assert DEAD_URL in status["error"]


async def test_admin_key_never_reaches_the_browser(jp_fetch: Any) -> None:
    response = await jp_fetch("easytensor", "api", "status")
    assert b"et_admin_not_used" not in response.body


@pytest.mark.parametrize(
    "body", ['{"version": "2"}', '{"v": 1}', "[1]", "not json", '{"version": true}']
)
async def test_default_needs_a_version_number(jp_fetch: Any, body: str) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("easytensor", "api", "models/m1/default", method="PUT", body=body)
    assert info.value.code == 400
    assert _error(info.value)["code"] == "bad_request"


async def test_predict_rejects_unknown_content_types(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "easytensor",
            "api",
            "models/m1/predict",
            method="POST",
            body="<a/>",
            headers={"Content-Type": "application/xml"},
        )
    assert info.value.code == 415
    assert "text/plain" in _error(info.value)["message"]


async def test_predict_version_must_be_a_number(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "easytensor",
            "api",
            "models/m1/predict",
            method="POST",
            body="{}",
            params={"version": "latest"},
        )
    assert info.value.code == 400


async def test_unknown_method_keeps_the_error_shape(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("easytensor", "api", "models", method="POST", body="{}")
    assert info.value.code == 405
    assert _error(info.value)["code"] == "method_not_allowed"
