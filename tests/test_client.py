"""The HTTP client against a real server: configuration order, errors, retries, every v1 route."""

from __future__ import annotations

import json as jsonlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import RunningServer

from easytensor_jupyter import config
from easytensor_jupyter.client import Client, EasyTensorError


def test_explicit_beats_environment_beats_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path))
    (tmp_path / "admin_key").write_text("from-file\n")
    monkeypatch.delenv("EASYTENSOR_URL", raising=False)
    monkeypatch.delenv("EASYTENSOR_API_KEY", raising=False)
    assert config.resolve_api_key() == "from-file"
    monkeypatch.setenv("EASYTENSOR_API_KEY", "from-env")
    monkeypatch.setenv("EASYTENSOR_URL", "http://env:1/")
    assert config.resolve_api_key() == "from-env"
    assert config.resolve_url() == "http://env:1"
    client = Client("http://explicit:2", "explicit-key")
    assert (client.url, client.api_key) == ("http://explicit:2", "explicit-key")


def test_no_server_configured_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path))
    monkeypatch.delenv("EASYTENSOR_URL", raising=False)
    with pytest.raises(EasyTensorError) as err:
        Client()
    assert err.value.code == "no_server"
    assert str(err.value).startswith("No EasyTensor server is running on this machine")
    assert "`easytensor serve`" in str(err.value) and "EASYTENSOR_URL" in str(err.value)
    with pytest.raises(EasyTensorError, match="No EasyTensor server is running"):
        Client.connect(autostart=False)


def test_the_server_running_here_is_found_and_announced(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EASYTENSOR_HOME", str(server.home))
    monkeypatch.delenv("EASYTENSOR_URL", raising=False)
    monkeypatch.delenv("EASYTENSOR_API_KEY", raising=False)
    heard: list[str] = []
    client = Client.connect(announce=heard.append)
    assert client.url == server.url and client.source == "running"
    assert client.server is not None and client.server.pid == server.proc.pid
    assert heard == [f"Using the EasyTensor server at {client.server.describe()}"]
    assert client.api_key == server.admin_key
    assert client.health()["status"] == "ok"
    assert Client().url == server.url
    monkeypatch.setenv("EASYTENSOR_URL", "http://127.0.0.1:9")
    heard.clear()
    assert Client.connect(announce=heard.append).url == "http://127.0.0.1:9" and heard == []


def test_several_servers_here_are_an_error_naming_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dataclasses import asdict, replace

    from easytensor_jupyter import servers

    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path))
    monkeypatch.delenv("EASYTENSOR_URL", raising=False)
    first = servers.register("http://127.0.0.1:1", store="/s")
    second = replace(first, url="http://127.0.0.1:2", pid=os.getppid(), process_start=None)
    config.write_private_file(
        servers.records_dir() / f"{second.pid}.json", jsonlib.dumps(asdict(second))
    )
    with pytest.raises(EasyTensorError) as err:
        Client.connect()
    assert err.value.code == "several_servers"
    assert sorted(err.value.detail["servers"]) == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert str(err.value).endswith("Choose one with url=... or EASYTENSOR_URL.")
    assert Client("http://127.0.0.1:2").url == "http://127.0.0.1:2"


def test_unreachable_server_retries_then_explains() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", "k", retries=2, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(EasyTensorError, match="Cannot reach the EasyTensor server") as err:
        client.list_models()
    assert err.value.status == 0
    assert time.monotonic() - started >= 0.05 + 0.1  # two backoffs before giving up


class _FlakyHandler(BaseHTTPRequestHandler):
    """Answers 503 with Retry-After twice, then 200: a fault the real server can't be made to show on cue."""

    calls: list[str] = []

    def do_GET(self) -> None:
        type(self).calls.append(self.path)
        if len(type(self).calls) <= 2:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            body = b'{"error": {"code": "overloaded", "message": "busy", "detail": null}}'
        else:
            self.send_response(200)
            body = b'{"models": []}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_503_is_retried_honouring_retry_after() -> None:
    _FlakyHandler.calls = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        client = Client(f"http://127.0.0.1:{httpd.server_address[1]}", "k", retries=3, backoff=0.01)
        assert client.list_models() == []
        assert len(_FlakyHandler.calls) == 3
        _FlakyHandler.calls = []
        with pytest.raises(EasyTensorError, match="busy") as err:
            Client(client.url, "k", retries=1, backoff=0.01).list_models()
        assert (err.value.status, err.value.code) == (503, "overloaded")
    finally:
        httpd.shutdown()


def test_server_errors_carry_code_and_message(server: RunningServer) -> None:
    client = Client(server.url, server.admin_key)
    with pytest.raises(EasyTensorError) as err:
        client.get_model("no-such-model")
    assert (err.value.status, err.value.code) == (404, "not_found")
    with pytest.raises(EasyTensorError) as bad_key:
        Client(server.url, "wrong").list_models()
    assert bad_key.value.status == 401


def test_every_route(server: RunningServer, tiny_model: dict[str, Any]) -> None:
    client = Client(server.url, server.admin_key)
    model_id = tiny_model["id"]
    assert client.health()["status"] == "ok"
    assert client.find_model(tiny_model["name"])["id"] == model_id
    assert [v["version"] for v in client.versions(model_id)] == [1]
    token = client.create_token(model_id)
    assert any(t["id"] == token["id"] for t in client.list_tokens(model_id))
    labelled = client.create_token(model_id, "notebook a.ipynb, cell 3")
    assert labelled["label"] == "notebook a.ipynb, cell 3"
    listed = {t["id"]: t for t in client.list_tokens(model_id)}
    assert listed[labelled["id"]]["label"] == "notebook a.ipynb, cell 3"
    assert listed[token["id"]]["label"] is None
    by_token = client.predict(model_id, [[1.0, 2.0, 3.0, 4.0]], token=token["token"])
    by_admin = client.predict(model_id, [[1.0, 2.0, 3.0, 4.0]])
    assert by_token.predictions == by_admin.predictions and by_token.version == 1
    assert by_token.latency_ms > 0
    client.revoke_token(model_id, token["id"])
    with pytest.raises(EasyTensorError) as revoked:
        client.predict(model_id, [[1.0, 2.0, 3.0, 4.0]], token=token["token"])
    assert revoked.value.status == 401
    assert client.set_default(model_id, 1)["default_version"] == 1
    client.delete_model(model_id)
    with pytest.raises(EasyTensorError):
        client.get_model(model_id)


class _RecordingSession:
    """Records the exact call the client makes; what the route does is the server tests' job."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, Any]] = []

    def request(self, method: str, url: str, *, json: Any = None, **_: Any) -> requests.Response:
        self.calls.append((method, url, json))
        response = requests.Response()
        response.status_code = 200
        response._content = jsonlib.dumps(self.answer).encode()
        return response


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs replicas=N for a fixed count, or max_replicas=N"),
        ({"replicas": 2, "max_replicas": 4}, "not both: got replicas with max_replicas"),
        (
            {"replicas": 1, "min_replicas": 0, "target_ongoing_requests": 3.0},
            "got replicas with min_replicas, target_ongoing_requests",
        ),
    ],
)
def test_set_scaling_rejects_mixed_or_missing_forms_before_any_request(
    kwargs: dict[str, Any], message: str
) -> None:
    client = Client("http://127.0.0.1:9", "k")
    session = _RecordingSession({})
    client.session = session  # type: ignore[assignment]
    with pytest.raises(ValueError, match=message):
        client.set_scaling("m-1", **kwargs)
    assert session.calls == []


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        ({"replicas": 2}, {"replicas": 2}),
        ({"max_replicas": 4}, {"autoscaling": {"max_replicas": 4}}),
        (
            {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 2.5},
            {"autoscaling": {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 2.5}},
        ),
    ],
)
def test_set_scaling_sends_one_form_and_returns_the_model(
    kwargs: dict[str, Any], body: dict[str, Any]
) -> None:
    model = {"id": "m-1", "scaling": {"replicas": 2, "autoscaling": None}, "replicas_running": 1}
    client = Client("http://127.0.0.1:9", "k")
    session = _RecordingSession(model)
    client.session = session  # type: ignore[assignment]
    assert client.set_scaling("m-1", **kwargs) == model
    assert session.calls == [("PUT", "http://127.0.0.1:9/v1/models/m-1/scaling", body)]
