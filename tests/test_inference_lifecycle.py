"""Server start-up and shut-down: the admin key, embedded mode, kill -9 and restart."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests
from bundles import Bundle
from servers import RunningServer, alive

from easytensor_jupyter import config


def test_admin_key_is_created_once_and_private(
    spawn_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first = spawn_server(home=home)
    key_file = home / "admin_key"
    assert f"Admin key (shown once, saved to {key_file}): {first.admin_key}" in first.log()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.stop() == 0
    assert "EasyTensor server stopped" in first.log()

    second = spawn_server(home=home)
    assert f"Admin key: saved in {key_file}" in second.log()
    assert second.admin_key not in second.log()
    assert requests.get(f"{second.url}/v1/models", headers=second.admin).status_code == 200
    assert second.stop(signal.SIGINT) == 0


def test_admin_key_from_environment_and_cors(
    spawn_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    running = spawn_server(
        "--cors-origin",
        "http://lab.example",
        home=home,
        env={"EASYTENSOR_API_KEY": "et_admin_from_env"},
    )
    assert not (home / "admin_key").exists()
    assert "EASYTENSOR_API_KEY" in running.log() and "et_admin_from_env" not in running.log()
    assert requests.get(f"{running.url}/v1/models", headers=running.admin).status_code == 200

    def preflight(origin: str) -> requests.Response:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        return requests.options(f"{running.url}/v1/models", headers=headers)

    allowed = preflight("http://lab.example")
    assert allowed.headers["access-control-allow-origin"] == "http://lab.example"
    assert "access-control-allow-origin" not in preflight("http://evil.example").headers


def test_cors_is_closed_by_default(server: RunningServer) -> None:
    headers = {"Origin": "http://lab.example"}
    response = requests.get(f"{server.url}/health", headers=headers)
    assert "access-control-allow-origin" not in response.headers


def test_kill9_then_restart_serves_everything_again(
    spawn_server: Callable[..., RunningServer],
    bundle_factory: Callable[..., Bundle],
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    # A temp folder of their own: another test's server starting meanwhile would sweep the
    # killed server's folders before this test looks for them.
    private = tmp_path / "tmp"
    private.mkdir()
    before = spawn_server(home=home, env={"TMPDIR": str(private)})
    answers = {}
    for name, tag in [("first", "a"), ("second", "b")]:
        body = before.upload(bundle_factory(name=name, init_kwargs={"tag": tag})).json()
        answer = before.predict(body["id"], ["same", [1, 2, 3, 4]], body["query_token"])
        assert answer.status_code == 200
        answers[body["id"]] = (body["query_token"], answer.json()["predictions"])
    workers = before.worker_pids()
    assert workers
    before.proc.kill()
    before.proc.wait(10)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers):
        assert time.monotonic() < deadline, "workers must die with their server"
        time.sleep(0.05)
    stray = before.store / "tmp" / "blob-stray.tmp"
    stray.write_bytes(b"half a file")

    leftovers = list(private.glob(f"easytensor-worker-{before.proc.pid}-*"))
    assert leftovers, "a killed server leaves its worker folders behind"

    after = spawn_server(home=home, env={"TMPDIR": str(private)})
    assert not stray.exists()
    assert not any(p.exists() for p in leftovers), "the next server sweeps them"
    for model_id, (token, predictions) in answers.items():
        again = after.predict(model_id, ["same", [1, 2, 3, 4]], token)
        assert again.status_code == 200, again.text
        assert again.json()["predictions"] == predictions

    db = sqlite3.connect(after.store / "easytensor.sqlite3")
    hashes = {row[0] for row in db.execute("SELECT token_hash FROM tokens")}
    db.close()
    for token, _ in answers.values():
        assert hashlib.sha256(token.encode()).hexdigest() in hashes
        for path in after.store.glob("easytensor.sqlite3*"):
            assert token.encode() not in path.read_bytes()


def test_kill9_mid_upload_leaves_no_version(
    spawn_server: Callable[..., RunningServer],
    bundle_factory: Callable[..., Bundle],
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    before = spawn_server(home=home)
    big = bundle_factory(name="interrupted", init_kwargs={"n_in": 1000, "n_out": 2000})
    data = big.tar_bytes()
    parts = urlsplit(before.url)
    head = (
        f"POST /v1/models HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {before.admin_key}\r\nContent-Type: application/x-tar\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head + data[: len(data) // 2])
        deadline = time.monotonic() + 10
        while not list((before.store / "tmp").glob("blob-*")):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        before.proc.kill()
        before.proc.wait(10)

    after = spawn_server(home=home)
    assert requests.get(f"{after.url}/v1/models", headers=after.admin).json() == {"models": []}
    assert not list((after.store / "tmp").iterdir())
    assert not list((after.store / "blobs").glob("??/*"))


def test_embedded_server_follows_its_owner(
    spawn_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        running = spawn_server("--embedded", "--owner-pid", str(owner.pid), home=home)
        assert "Admin key created and saved to" in running.log()
        assert running.admin_key not in running.log(), "an embedded server logs to a file"
        info = json.loads((home / "server.json").read_text())
        assert info == {
            "url": running.url,
            "pid": running.proc.pid,
            "store": str(home / "store"),
            "owner_pid": owner.pid,
        }
        os.environ["EASYTENSOR_HOME"] = str(home)
        try:
            assert config.resolve_url() == running.url
        finally:
            del os.environ["EASYTENSOR_HOME"]
    finally:
        owner.kill()
        owner.wait()
    started = time.monotonic()
    assert running.proc.wait(10) == 0
    assert time.monotonic() - started < 3
    assert not (home / "server.json").exists()


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
        env["EASYTENSOR_HOME"] = str(tmp_path)
        result = subprocess.run(
            [sys.executable, "-m", "easytensor_jupyter.cli", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
