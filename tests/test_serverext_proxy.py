"""The proxy's own decisions, without Jupyter: which server, and how failures are worded."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from easytensor_jupyter import config
from easytensor_jupyter.client import EasyTensorError
from easytensor_jupyter.serverext.proxy import ProxyError, Upstream, model_path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("EASYTENSOR_URL", "EASYTENSOR_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path))
    return tmp_path


def test_ids_from_the_browser_are_escaped() -> None:
    assert model_path("a b/../c", "tokens", "t?1") == "/v1/models/a%20b%2F..%2Fc/tokens/t%3F1"


def test_server_errors_keep_their_status_code_and_detail() -> None:
    error = ProxyError.from_client(
        EasyTensorError("bad input", status=422, code="model_error", detail={"traceback": "x"}),
        "http://u",
    )
    assert (error.status_code, error.code, error.message) == (422, "model_error", "bad input")
    assert error.detail == {"traceback": "x"}


def test_unreachable_and_slow_servers_become_502_and_504() -> None:
    down = ProxyError.from_client(EasyTensorError("Cannot reach"), "http://u")
    assert (down.status_code, down.code, down.detail) == (
        502,
        "upstream_unreachable",
        {"url": "http://u"},
    )
    slow = ProxyError.from_client(EasyTensorError("late", code="client_timeout"), "http://u")
    assert (slow.status_code, slow.code) == (504, "upstream_timeout")


def test_percent_signs_survive_in_messages() -> None:
    error = ProxyError(422, "100% broken %s %d")
    assert error.log_message == "%s"
    assert error.args == ("100% broken %s %d",)


def test_configured_url_beats_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EASYTENSOR_URL", "http://env:1/")
    assert Upstream("http://conf:2/").url() == "http://conf:2"
    upstream = Upstream()
    assert (upstream.url(), upstream.embedded) == ("http://env:1", False)


def test_embedded_mode_follows_the_servers_info_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = Upstream()
    assert upstream.embedded
    assert upstream.url() is None
    config.write_server_info(config.ServerInfo("http://127.0.0.1:9", os.getpid(), str(home)))
    monkeypatch.setenv("EASYTENSOR_URL", "http://127.0.0.1:8")  # what an older server had set
    assert upstream.url() == "http://127.0.0.1:9"
    assert os.environ["EASYTENSOR_URL"] == "http://127.0.0.1:9"


def test_calls_while_the_embedded_server_starts_are_503(home: Path) -> None:
    upstream = Upstream()
    upstream.starting = True
    with pytest.raises(ProxyError) as info:
        asyncio.run(upstream.call(lambda client: client.list_models()))
    assert (info.value.status_code, info.value.code) == (503, "starting")


def test_no_server_at_all_is_a_502_that_says_what_to_do(home: Path) -> None:
    with pytest.raises(ProxyError) as info:
        asyncio.run(Upstream().call(lambda client: client.list_models()))
    assert info.value.status_code == 502
    assert "easytensor serve" in info.value.message


def test_a_failed_autostart_is_reported(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(**_: object) -> config.ServerInfo:
        raise RuntimeError("port trouble")

    monkeypatch.setattr("easytensor_jupyter.embedded.ensure_server", fail)
    upstream = Upstream()
    upstream.start_in_background().join(10)
    assert not upstream.starting
    status = asyncio.run(upstream.status())
    assert status["connected"] is False
    assert "port trouble" in status["error"]
    assert "EASYTENSOR_URL" not in os.environ


def test_ip_literals_resolve_at_once_and_names_still_resolve() -> None:
    from easytensor_jupyter.serverext.proxy import _LiteralFirstResolver

    async def resolve() -> list[list[tuple[int, Any]]]:
        resolver = _LiteralFirstResolver()
        return [
            await resolver.resolve("127.0.0.1", 80),
            await resolver.resolve("[::1]", 81),
            await resolver.resolve("localhost", 82),
        ]

    four, six, name = asyncio.run(resolve())
    assert four == [(socket.AF_INET, ("127.0.0.1", 80))]
    assert six == [(socket.AF_INET6, ("::1", 81, 0, 0))]
    assert name and all(address[1] == 82 for _, address in name)


def test_predictions_pass_through_and_a_non_json_error_keeps_its_status() -> None:
    """A small real HTTP server stands in for one that answers errors without JSON (a
    misconfigured reverse proxy in front of the inference server, say)."""
    seen: list[tuple[str, str | None, str | None]] = []

    class Predict(tornado.web.RequestHandler):
        def post(self, model_id: str) -> None:
            seen.append(
                (
                    model_id,
                    self.get_argument("version", None),
                    self.request.headers.get("Authorization"),
                )
            )
            if model_id == "broken":
                self.set_status(500)
                self.finish("<html>upstream fell over</html>")
                return
            self.finish(
                {"predictions": [json.loads(self.request.body)["instances"][0]], "version": 3}
            )

    async def scenario() -> tuple[dict[str, Any], ProxyError]:
        app = tornado.web.Application([(r"/v1/models/([^/]+)/predict", Predict)])
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        upstream = Upstream(f"http://127.0.0.1:{port}", "et_admin_k")
        try:
            answer = await upstream.predict("m1", b'{"instances": [7]}', "application/json", 3)
            with pytest.raises(ProxyError) as caught:
                await upstream.predict("broken", b"{}", "application/json", None)
            return answer, caught.value
        finally:
            server.stop()

    answer, error = asyncio.run(scenario())
    assert answer["predictions"] == [7] and answer["version"] == 3 and answer["latency_ms"] > 0
    assert (error.status_code, error.code) == (500, "internal_error")
    assert "upstream fell over" in error.message
    assert seen == [("m1", "3", "Bearer et_admin_k"), ("broken", None, "Bearer et_admin_k")]
