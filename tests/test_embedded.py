"""The embedded server: one per EASYTENSOR_HOME, joined by later callers, gone with its owner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from easytensor_jupyter import config, embedded


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("EASYTENSOR_URL", "EASYTENSOR_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path))
    return tmp_path


def test_started_once_joined_after_and_stopped(home: Path) -> None:
    info = embedded.ensure_server(home)
    try:
        assert info.url.startswith("http://127.0.0.1:")
        assert requests.get(f"{info.url}/health", timeout=5).json()["status"] == "ok"
        assert embedded.ensure_server(home) == info
        assert config.admin_key_path(home).stat().st_mode & 0o777 == 0o600
        assert config.resolve_url() == info.url
    finally:
        assert embedded.stop_server(home)
    assert config.read_server_info(home) is None
    assert embedded.stop_server(home) is False


def test_server_exits_when_its_owner_dies(home: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = embedded.ensure_server(home, owner_pid=owner.pid)
        assert info.owner_pid == owner.pid
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and config.pid_alive(info.pid):
        time.sleep(0.1)
    assert not config.pid_alive(info.pid), "the embedded server outlived its owner"
    assert config.read_server_info(home) is None


def test_a_server_that_cannot_start_says_where_its_log_is(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EASYTENSOR_API_KEY", "")
    (home / "store").write_text("not a directory")
    with pytest.raises(embedded.EmbeddedServerError, match=r"exited at start.*server\.log"):
        embedded.ensure_server(home, timeout=60)


def test_pid_alive_treats_zombies_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and config.pid_alive(child.pid):
        time.sleep(0.05)
    assert not config.pid_alive(child.pid), "an exited, unreaped child must count as gone"
    assert os.waitpid(child.pid, 0)[0] == child.pid
