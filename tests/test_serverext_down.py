"""The inference server going away under a running Jupyter: the panel gets plain 502s, not hangs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def upstream(spawn_server: Callable[..., Any]) -> Any:
    return spawn_server()


@pytest.fixture
def api_key(upstream: Any) -> str:
    key: str = upstream.admin_key
    return key


@pytest.fixture
def jp_server_config(upstream: Any, api_key: str) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"easytensor_jupyter": True}},
        "EasyTensor": {"url": upstream.url, "api_key": api_key, "autostart": False},
    }


async def test_server_stopping_turns_into_readable_502s(jp_fetch: Any, upstream: Any) -> None:
    status = json.loads((await jp_fetch("easytensor", "api", "status")).body)
    assert status["connected"] is True
    assert json.loads((await jp_fetch("easytensor", "api", "models")).body) == {"models": []}

    upstream.stop()

    status = json.loads((await jp_fetch("easytensor", "api", "status")).body)
    assert status["connected"] is False
    assert status["url"] == upstream.url
    assert upstream.url in status["error"]

    for path, method, body in (
        ("models", "GET", None),
        ("models/m1/predict", "POST", '{"instances": [1]}'),
    ):
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch(
                "easytensor",
                "api",
                path,
                method=method,
                body=body,
                headers={"Content-Type": "application/json"},
            )
        assert info.value.code == 502
        assert info.value.response is not None
        error = json.loads(info.value.response.body)["error"]
        assert error["code"] == "upstream_unreachable"
        assert f"Cannot reach the EasyTensor server at {upstream.url}" in error["message"]


@pytest.mark.parametrize("api_key", ["et_admin_wrong"])
async def test_wrong_admin_key_passes_the_401_through(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("easytensor", "api", "models")
    assert info.value.code == 401
    assert info.value.response is not None
    error = json.loads(info.value.response.body)["error"]
    assert error["code"] == "invalid_credentials"
    assert "et_admin_wrong" not in info.value.response.body.decode()
