"""Who may do what: a query token is good for its own model's predictions and nothing else,
revocation is immediate, secrets never rest in the clear, and the server is closed by default
(loopback, no CORS). Each check pairs the denial with the allowed call beside it.
"""

from __future__ import annotations

import ast
import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from bundles import Bundle
from servers import RunningServer

from easytensor_jupyter.cli import serve as serve_cli
from easytensor_jupyter.inference.options import ServeOptions

__all__: list[str] = []


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_query_token_works_only_for_its_model_and_only_for_predict(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    first = server.upload(bundle_factory(name=unique_name)).json()
    second = server.upload(bundle_factory(name=unique_name + " b")).json()
    token = first["query_token"]
    assert server.predict(first["id"], ["mine"], token=token).status_code == 200
    other = server.predict(second["id"], ["not mine"], token=token)
    assert other.status_code == 403 and other.json()["error"]["code"] == "wrong_model"
    legacy = requests.post(
        f"{server.url}/query/", json={"instances": ["x"]}, headers={"accessToken": token}
    )
    assert legacy.status_code == 200 and legacy.json()["model_id"] == first["id"]
    model = f"{server.url}/v1/models/{first['id']}"
    admin_calls = [
        ("GET", f"{server.url}/v1/models"),
        ("GET", model),
        ("DELETE", model),
        ("PUT", f"{model}/default"),
        ("POST", f"{model}/tokens"),
        ("GET", f"{model}/tokens"),
        ("POST", f"{server.url}/v1/models"),
    ]
    for method, url in admin_calls:
        response = requests.request(method, url, headers=_bearer(token), json={"version": 1})
        assert response.status_code == 403, (method, url, response.text)
        assert response.json()["error"]["code"] == "admin_required"
    assert requests.get(model, headers=server.admin).status_code == 200


def test_revoked_token_fails_at_once_and_tokens_rest_hashed(
    server: RunningServer, tiny_model: dict[str, Any]
) -> None:
    model_id = tiny_model["id"]
    made = requests.post(f"{server.url}/v1/models/{model_id}/tokens", headers=server.admin)
    assert made.status_code == 201
    token, token_id = made.json()["token"], made.json()["id"]
    assert server.predict(model_id, ["before"], token=token).status_code == 200
    revoke = requests.delete(
        f"{server.url}/v1/models/{model_id}/tokens/{token_id}", headers=server.admin
    )
    assert revoke.status_code in (200, 204)
    after = server.predict(model_id, ["after"], token=token)
    assert after.status_code == 401 and after.json()["error"]["code"] == "token_revoked"
    still = server.predict(model_id, ["other token"], token=tiny_model["query_token"])
    assert still.status_code == 200

    with sqlite3.connect(f"file:{server.store / 'easytensor.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT * FROM tokens").fetchall()
        dump = "\n".join(db.iterdump())
    assert rows, "no tokens in the database"
    for secret in (token, tiny_model["query_token"], server.admin_key):
        assert secret not in dump
        assert secret[5:] not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump


def test_admin_key_file_and_store_are_private(server: RunningServer) -> None:
    assert (server.home / "admin_key").stat().st_mode & 0o777 == 0o600
    assert server.store.stat().st_mode & 0o777 == 0o700


def test_server_binds_loopback_unless_told(tmp_path: Path) -> None:
    assert ServeOptions().host == "127.0.0.1"
    parser = ast.parse(Path(serve_cli.__file__).read_text())
    defaults = [
        kw.value.value
        for node in ast.walk(parser)
        if isinstance(node, ast.Call)
        and node.args
        and getattr(node.args[0], "value", "") == "--host"
        for kw in node.keywords
        if kw.arg == "default" and isinstance(kw.value, ast.Constant)
    ]
    assert defaults == ["127.0.0.1"]
    script = (
        "import sys, easytensor_jupyter.inference.server as s\n"
        "s.run = lambda o: print(o.host) or 0\n"
        "from easytensor_jupyter.cli import main\n"
        "sys.exit(main(['serve']))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"EASYTENSOR_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert shown.stdout.strip().splitlines()[-1] == "127.0.0.1", shown.stderr


def test_server_socket_is_on_loopback(server: RunningServer) -> None:
    """Read the kernel's table of listening sockets for the server's port."""
    port = int(server.url.rsplit(":", 1)[1])
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            listening.append(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    assert listening == ["127.0.0.1"]


def test_cors_is_closed_by_default(server: RunningServer, tiny_model: dict[str, Any]) -> None:
    headers = {
        "Origin": "http://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    url = f"{server.url}/v1/models/{tiny_model['id']}/predict"
    preflight = requests.options(url, headers=headers)
    assert "access-control-allow-origin" not in preflight.headers
    simple = requests.post(
        url,
        json={"instances": ["x"]},
        headers={**_bearer(tiny_model["query_token"]), "Origin": "http://evil.example"},
    )
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers
