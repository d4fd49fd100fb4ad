"""Every lab-panel route, through Jupyter, against the real inference server and real models.

Models are published once per module with the same client path users take (``publish``: build,
rebuild in a fresh process, upload), so a route that works here works for a notebook's model.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
from tornado.httpclient import HTTPClientError, HTTPResponse

from easytensor_jupyter._version import __version__
from easytensor_jupyter.client import Client, EasyTensorError
from easytensor_jupyter.packaging import InitArgs, PublishRequest, build_bundle, publish

pytest_plugins = ["pytest_jupyter.jupyter_server"]

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
HEADLINE = "Liverpool beat Manchester United 4-2 on May 13th"
ECHO_NAME = f"echo-{uuid.uuid4().hex[:8]}"  # other modules may share the server
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))

ECHO_SOURCE = textwrap.dedent(
    '''
    """Says what it was given, so each body type can be told apart; "boom" and "sleep" misbehave."""
    import time

    import torch
    from torch import nn


    class Echo(nn.Module):
        def __init__(self, tag=1.0):
            super().__init__()
            self.tag = nn.Parameter(torch.tensor([float(tag)]))

        def predict_single(self, input):
            if input == "boom":
                raise ValueError("boom was asked for")
            if input == "sleep":
                time.sleep(2)
            size = len(input) if isinstance(input, (str, bytes, list, dict)) else None
            return {"kind": type(input).__name__, "size": size, "tag": round(self.tag.item(), 3)}
    '''
)


@dataclass
class Deployed:
    url: str
    api_key: str
    echo_id: str
    news_id: str
    news_answer: str


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _echo_request(tmp: Path, tag: float, name: str) -> PublishRequest:
    path = tmp / "echo_model.py"
    path.write_text(ECHO_SOURCE, encoding="utf-8")
    echo = _load_module(f"echo_model_{tag:g}".replace(".", "_"), path)
    return PublishRequest(
        name=name,
        model=echo.Echo(tag),
        source=ECHO_SOURCE,
        init=InitArgs([], {"tag": tag}),
        sample="hello",
    )


def _news_model() -> tuple[Any, str]:
    """Train the quickstart model against the very source text that is uploaded with it."""
    source = (QUICKSTART / "model.py").read_text(encoding="utf-8")
    module = ModuleType("model")
    exec(compile(source, str(QUICKSTART / "model.py"), "exec"), module.__dict__)
    sys.modules["model"] = module
    try:
        return _load_module("quickstart_train", QUICKSTART / "train.py").train(), source
    finally:
        sys.modules.pop("model", None)


@pytest.fixture(scope="module")
def deployed(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    tmp = tmp_path_factory.mktemp("models")
    client = Client(server.url, server.admin_key)
    echo_id = ""
    for tag in (1.0, 2.0):
        echo_id = publish(_echo_request(tmp, tag, ECHO_NAME), client).id
    news, source = _news_model()
    news_id = publish(
        PublishRequest(name="News classifier", model=news, source=source, sample=HEADLINE), client
    ).id
    return Deployed(
        server.url,
        server.admin_key,
        echo_id,
        news_id,
        news.predict_single(HEADLINE),
    )


@pytest.fixture
def jp_server_config(deployed: Deployed) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"easytensor_jupyter": True}},
        "EasyTensor": {"url": deployed.url, "api_key": deployed.api_key, "autostart": False},
    }


def _body(response: HTTPResponse) -> Any:
    return json.loads(response.body)


async def _api(jp_fetch: Any, path: str, **kwargs: Any) -> Any:
    response = await jp_fetch("easytensor", "api", path, **kwargs)
    return _body(response) if response.body else response.code


async def _api_error(jp_fetch: Any, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("easytensor", "api", path, **kwargs)
    assert info.value.response is not None
    return info.value.code, _body(info.value.response)["error"]


async def _predict(
    jp_fetch: Any, model_id: str, body: bytes | str, content_type: str, **kw: Any
) -> Any:
    return await _api(
        jp_fetch,
        f"models/{model_id}/predict",
        method="POST",
        body=body,
        headers={"Content-Type": content_type},
        **kw,
    )


# -- status and models ---------------------------------------------------------------------------
async def test_status_connected(jp_fetch: Any, deployed: Deployed) -> None:
    status = await _api(jp_fetch, "status")
    assert status == {
        "url": deployed.url,
        "connected": True,
        "embedded": False,
        "version": __version__,
        "extension_version": __version__,
        "error": None,
    }


async def test_list_models_is_the_servers_list(jp_fetch: Any, deployed: Deployed) -> None:
    listed = await _api(jp_fetch, "models")
    upstream = Client(deployed.url, deployed.api_key).list_models()
    assert {m["id"] for m in listed["models"]} >= {deployed.echo_id, deployed.news_id}
    assert [m["id"] for m in listed["models"]] == [m["id"] for m in upstream]


async def test_get_model_with_versions(jp_fetch: Any, deployed: Deployed) -> None:
    model = await _api(jp_fetch, f"models/{deployed.echo_id}")
    assert model["name"] == ECHO_NAME
    assert [v["version"] for v in model["versions"]] == [1, 2]
    assert model["default_version"] == 2


async def test_admin_key_is_never_sent_to_the_browser(jp_fetch: Any, deployed: Deployed) -> None:
    for path in (
        "status",
        "models",
        f"models/{deployed.echo_id}",
        f"models/{deployed.echo_id}/tokens",
    ):
        response = await jp_fetch("easytensor", "api", path)
        assert deployed.api_key.encode() not in response.body


async def test_unknown_model_passes_the_404_through(jp_fetch: Any) -> None:
    status, error = await _api_error(jp_fetch, "models/no-such-model")
    assert status == 404
    assert error["code"] == "model_not_found" or error["code"].endswith("not_found")
    assert "no-such-model" in error["message"]


# -- predictions ---------------------------------------------------------------------------------
async def test_predict_json_instances(jp_fetch: Any, deployed: Deployed) -> None:
    answer = await _predict(
        jp_fetch, deployed.news_id, json.dumps({"instances": [HEADLINE]}), "application/json"
    )
    assert answer["predictions"] == [deployed.news_answer]
    assert answer["model_id"] == deployed.news_id
    assert answer["version"] == 1
    assert answer["latency_ms"] > 0


async def test_predict_text_body(jp_fetch: Any, deployed: Deployed) -> None:
    answer = await _predict(jp_fetch, deployed.news_id, HEADLINE, "text/plain; charset=utf-8")
    assert answer["predictions"] == [deployed.news_answer]
    echoed = await _predict(jp_fetch, deployed.echo_id, "héllo", "text/plain; charset=utf-8")
    assert echoed["predictions"] == [{"kind": "str", "size": 5, "tag": 2.0}]


@pytest.mark.parametrize("content_type", ["application/octet-stream", "image/png"])
async def test_predict_file_body(jp_fetch: Any, deployed: Deployed, content_type: str) -> None:
    answer = await _predict(jp_fetch, deployed.echo_id, PNG, content_type)
    assert answer["predictions"] == [{"kind": "bytes", "size": len(PNG), "tag": 2.0}]
    assert answer["version"] == 2


async def test_predict_b64_inside_json(jp_fetch: Any, deployed: Deployed) -> None:
    body = {"instances": [{"b64": base64.b64encode(PNG).decode()}, "ab"]}
    answer = await _predict(jp_fetch, deployed.echo_id, json.dumps(body), "application/json")
    assert answer["predictions"] == [
        {"kind": "bytes", "size": len(PNG), "tag": 2.0},
        {"kind": "str", "size": 2, "tag": 2.0},
    ]


async def test_predict_a_chosen_version(jp_fetch: Any, deployed: Deployed) -> None:
    answer = await _predict(jp_fetch, deployed.echo_id, "x", "text/plain", params={"version": "1"})
    assert answer["version"] == 1
    assert answer["predictions"][0]["tag"] == 1.0


async def test_model_error_passes_the_422_through(jp_fetch: Any, deployed: Deployed) -> None:
    status, error = await _api_error(
        jp_fetch,
        f"models/{deployed.echo_id}/predict",
        method="POST",
        body="boom",
        headers={"Content-Type": "text/plain"},
    )
    assert status == 422
    assert error["code"] == "model_error"
    assert "boom was asked for" in json.dumps(error)


async def test_bad_instances_pass_the_servers_400_through(
    jp_fetch: Any, deployed: Deployed
) -> None:
    status, error = await _api_error(
        jp_fetch,
        f"models/{deployed.echo_id}/predict",
        method="POST",
        body=json.dumps({"not_instances": 1}),
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= status < 500
    assert error["message"]


async def test_predict_unknown_version_is_a_404(jp_fetch: Any, deployed: Deployed) -> None:
    status, _ = await _api_error(
        jp_fetch,
        f"models/{deployed.echo_id}/predict",
        method="POST",
        body="x",
        headers={"Content-Type": "text/plain"},
        params={"version": "99"},
    )
    assert status == 404


async def test_slow_prediction_does_not_block_jupyter(jp_fetch: Any, deployed: Deployed) -> None:
    slow = asyncio.ensure_future(_predict(jp_fetch, deployed.echo_id, "sleep", "text/plain"))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    await _api(jp_fetch, "status")
    assert not slow.done()
    assert time.perf_counter() - started < 1.0
    answer = await slow
    assert answer["latency_ms"] >= 2000


# -- rollback ------------------------------------------------------------------------------------
async def test_rollback_by_default_version(jp_fetch: Any, deployed: Deployed) -> None:
    path = f"models/{deployed.echo_id}/default"
    try:
        model = await _api(jp_fetch, path, method="PUT", body=json.dumps({"version": 1}))
        assert model["default_version"] == 1
        answer = await _predict(jp_fetch, deployed.echo_id, "x", "text/plain")
        assert (answer["version"], answer["predictions"][0]["tag"]) == (1, 1.0)
    finally:
        model = await _api(jp_fetch, path, method="PUT", body=json.dumps({"version": 2}))
    assert model["default_version"] == 2
    answer = await _predict(jp_fetch, deployed.echo_id, "x", "text/plain")
    assert answer["version"] == 2


async def test_default_to_a_missing_version_is_refused(jp_fetch: Any, deployed: Deployed) -> None:
    status, error = await _api_error(
        jp_fetch, f"models/{deployed.echo_id}/default", method="PUT", body='{"version": 42}'
    )
    assert status in (404, 409, 422)
    assert error["message"]


# -- tokens --------------------------------------------------------------------------------------
async def test_token_life_cycle(jp_fetch: Any, deployed: Deployed) -> None:
    path = f"models/{deployed.echo_id}/tokens"
    response = await jp_fetch("easytensor", "api", path, method="POST", body="")
    assert response.code == 201
    created = _body(response)
    assert set(created) >= {"id", "token"}

    endpoint = f"{deployed.url}/v1/models/{deployed.echo_id}/predict"
    headers = {"Authorization": f"Bearer {created['token']}"}
    direct = requests.post(endpoint, json={"instances": ["a"]}, headers=headers, timeout=30)
    assert direct.status_code == 200, direct.text

    listed = await _api(jp_fetch, path)
    mine = [t for t in listed["tokens"] if t["id"] == created["id"]]
    assert len(mine) == 1
    assert created["token"] not in json.dumps(listed)
    assert created["label"] == mine[0]["label"] == "JupyterLab side panel"
    assert mine[0]["last_used_at"] is not None

    response = await jp_fetch("easytensor", "api", path, created["id"], method="DELETE")
    assert response.code == 204
    assert not response.body
    refused = requests.post(endpoint, json={"instances": ["a"]}, headers=headers, timeout=30)
    assert refused.status_code == 401


async def test_revoking_an_unknown_token_is_a_404(jp_fetch: Any, deployed: Deployed) -> None:
    status, _ = await _api_error(
        jp_fetch, f"models/{deployed.echo_id}/tokens/no-such-token", method="DELETE"
    )
    assert status == 404


# -- deletion ------------------------------------------------------------------------------------
@pytest.fixture
def scratch_model(deployed: Deployed, tmp_path: Path) -> Iterator[str]:
    """A two-version model to delete, uploaded from prebuilt bundles (already checked above)."""
    client = Client(deployed.url, deployed.api_key)
    model_id, name = "", f"scratch-{uuid.uuid4().hex[:8]}"
    for tag in (5.0, 6.0):
        directory = tmp_path / f"bundle-{tag:g}"
        directory.mkdir()
        build_bundle(_echo_request(tmp_path, tag, name), directory)
        model_id = client.upload_bundle(directory, create_token=False).id
    yield model_id
    with contextlib.suppress(EasyTensorError):
        client.delete_model(model_id)


async def test_delete_version_then_model(jp_fetch: Any, scratch_model: str) -> None:
    response = await jp_fetch(
        "easytensor", "api", f"models/{scratch_model}/versions/1", method="DELETE"
    )
    assert response.code == 204
    model = await _api(jp_fetch, f"models/{scratch_model}")
    assert [v["version"] for v in model["versions"]] == [2]

    response = await jp_fetch("easytensor", "api", f"models/{scratch_model}", method="DELETE")
    assert response.code == 204
    status, _ = await _api_error(jp_fetch, f"models/{scratch_model}")
    assert status == 404
    listed = await _api(jp_fetch, "models")
    assert scratch_model not in {m["id"] for m in listed["models"]}
