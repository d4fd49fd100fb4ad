"""A real ``jupyter server`` with nothing configured brings up the embedded inference server.

It must answer Jupyter at once (the start happens off-thread), report the embedded server once it
is up, hand its URL to kernels through their environment, and leave nothing behind when Jupyter
stops: the embedded server watches Jupyter's pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from easytensor_jupyter import config

REPO = Path(__file__).resolve().parents[1]
JUPYTER = Path(sys.executable).with_name("jupyter")


@dataclass
class Jupyter:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    home: Path
    log_path: Path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.get(f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def post(self, path: str, body: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _wait(predicate: Any, timeout: float, what: str, log: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{log()}" if log else ""))


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {key: value for key, _, value in pairs}


@contextlib.contextmanager
def _run_jupyter(tmp_path: Path, config: dict[str, Any] | None = None) -> Iterator[Jupyter]:
    home = tmp_path / "easytensor-home"
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    if config is not None:
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EASYTENSOR_", "JUPYTER_"))}
    env.update(
        HOME=str(tmp_path),
        EASYTENSOR_HOME=str(home),
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        # An editable install may lack the enable file under <prefix>/etc; the repo's copy works.
        JUPYTER_CONFIG_PATH=str(REPO / "jupyter-config"),
    )
    log_path = tmp_path / "jupyter.log"
    command = [
        str(JUPYTER),
        "server",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={tmp_path}",
        f"--IdentityProvider.token={token}",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield Jupyter(proc, f"http://127.0.0.1:{port}", token, home, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        info = home / "server.json"
        if info.exists():
            pid = json.loads(info.read_text())["pid"]
            if config.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def jupyter(tmp_path: Path) -> Iterator[Jupyter]:
    with _run_jupyter(tmp_path) as running:
        yield running


@pytest.fixture
def jupyter_no_autostart(tmp_path: Path) -> Iterator[Jupyter]:
    with _run_jupyter(tmp_path, {"EasyTensor": {"autostart": False}}) as running:
        yield running


def _status(jupyter: Jupyter) -> dict[str, Any] | None:
    if jupyter.proc.poll() is not None:
        raise AssertionError(f"jupyter exited with {jupyter.proc.returncode}:\n{jupyter.log()}")
    try:
        response = jupyter.get("/easytensor/api/status")
    except requests.ConnectionError:
        return None
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


def test_autostart_runs_the_embedded_server_for_jupyters_lifetime(jupyter: Jupyter) -> None:
    first = _wait(lambda: _status(jupyter), 90, "jupyter to answer", jupyter.log)
    assert first["embedded"] is True

    status = _wait(
        lambda: (s := _status(jupyter)) and s["connected"] and s,
        120,
        "the embedded server",
        jupyter.log,
    )
    assert status["error"] is None
    assert status["url"].startswith("http://127.0.0.1:")

    info = json.loads((jupyter.home / "server.json").read_text())
    assert info["url"] == status["url"]
    assert info["owner_pid"] == jupyter.proc.pid
    assert requests.get(f"{info['url']}/health", timeout=10).json()["status"] == "ok"
    # The extension's start-up thread logs its line just after the server answers.
    _wait(
        lambda: f"embedded inference server at {info['url']}" in jupyter.log(),
        30,
        "the log line",
        jupyter.log,
    )

    models = jupyter.get("/easytensor/api/models")
    assert models.status_code == 200, models.text
    assert models.json() == {"models": []}

    kernel = jupyter.post("/api/kernels", {"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    kernel_env = _wait(
        lambda: next(
            (
                _environ(pid)
                for pid in _children(jupyter.proc.pid)
                if "ipykernel" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            ),
            None,
        ),
        60,
        "the kernel process",
        jupyter.log,
    )
    assert kernel_env["EASYTENSOR_URL"] == info["url"]
    assert "EASYTENSOR_API_KEY" not in kernel_env

    jupyter.proc.send_signal(signal.SIGTERM)
    jupyter.proc.wait(30)
    _wait(lambda: not config.pid_alive(info["pid"]), 10, "the embedded server to exit with Jupyter")
    assert not (jupyter.home / "server.json").exists()


def test_without_autostart_nothing_is_started(jupyter_no_autostart: Jupyter) -> None:
    status = _wait(lambda: _status(jupyter_no_autostart), 90, "jupyter", jupyter_no_autostart.log)
    time.sleep(1)
    status = _status(jupyter_no_autostart)
    assert status is not None
    assert status["connected"] is False
    assert status["embedded"] is True
    assert "No EasyTensor inference server is running" in status["error"]
    assert not (jupyter_no_autostart.home / "server.json").exists()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found
