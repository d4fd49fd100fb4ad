"""Two real ``easytensor serve`` processes sharing one store folder and one PostgreSQL registry:
what one server publishes, the other serves; what one deletes, the other no longer has. And a
registry that cannot be used stops the server at start-up with one line, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bundles import Bundle
from servers import RunningServer

from easytensor_jupyter.client import Client, EasyTensorError


def _pair(
    spawn_server: Callable[..., RunningServer], tmp_path: Path, db: str
) -> tuple[RunningServer, RunningServer, str]:
    key = f"shared-admin-{uuid.uuid4().hex}"
    env = {"EASYTENSOR_API_KEY": key}
    store = tmp_path / "shared-store"
    first = spawn_server("--db", db, home=tmp_path / "a", store=store, env=env)
    second = spawn_server("--db", db, home=tmp_path / "b", store=store, env=env)
    return first, second, key


def _view(model: dict[str, Any]) -> dict[str, Any]:
    """What both servers must agree on (URLs differ: each names itself)."""
    versions = [(v["version"], v["size_bytes"]) for v in model["versions"]]
    return {"id": model["id"], "name": model["name"], "versions": versions}


def test_two_servers_share_models_through_postgres(
    spawn_server: Callable[..., RunningServer],
    bundle_factory: Callable[..., Bundle],
    tmp_path: Path,
    postgres_db: str,
) -> None:
    a, b, key = _pair(spawn_server, tmp_path, postgres_db)
    for server in (a, b):
        assert f"Registry: PostgreSQL at {postgres_db}" in server.log()
    client_a, client_b = Client(a.url, key), Client(b.url, key)

    uploaded = client_a.upload_bundle(bundle_factory(name="shared tiny").directory)
    assert uploaded.version == 1 and uploaded.query_token
    assert _view(client_b.get_model(uploaded.id)) == _view(client_a.get_model(uploaded.id))
    assert [m["id"] for m in client_b.list_models()] == [uploaded.id]
    inputs = ["hello", [1.0, 2.0, 3.0, 4.0]]
    on_a = client_a.predict(uploaded.id, inputs, token=uploaded.query_token)
    on_b = client_b.predict(uploaded.id, inputs, token=uploaded.query_token)
    assert on_b.predictions == on_a.predictions and on_b.version == 1

    again = client_b.upload_bundle(
        bundle_factory(name="shared tiny", init_kwargs={"tag": "second"}).directory
    )
    assert (again.id, again.version) == (uploaded.id, 2), "numbers continue across servers"
    assert client_a.get_model(uploaded.id)["default_version"] == 2
    tagged = client_a.predict(uploaded.id, ["hello"], token=again.query_token)
    assert tagged.predictions == [{"text": "hello", "length": 5, "tag": "second"}]

    client_b.delete_model(uploaded.id)
    with pytest.raises(EasyTensorError) as gone:
        client_a.get_model(uploaded.id)
    assert gone.value.status == 404
    with pytest.raises(EasyTensorError) as refused:
        client_a.predict(uploaded.id, ["hello"], token=uploaded.query_token)
    assert refused.value.status in (401, 404)
    assert client_a.list_models() == []
    assert list((tmp_path / "shared-store" / "blobs").glob("??/*")) == []


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    env["EASYTENSOR_HOME"] = str(tmp_path / "home")
    command = [sys.executable, "-m", "easytensor_jupyter.cli", "serve", "--port", "0", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("mysql://root:hunter2@db/reg", "unsupported registry URL 'mysql://root@db/reg'"),
        ("postgresql://root:hunter2@127.0.0.1:{port}/reg", "cannot connect to the registry at"),
    ],
)
def test_an_unusable_registry_stops_the_server_with_one_line(
    tmp_path: Path, db: str, expected: str
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _serve(tmp_path, "--db", db.format(port=port))
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr + done.stdout
    assert "listening" not in done.stdout
