"""Where things live and which server and key a client uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from easytensor_jupyter import config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("EASYTENSOR_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("EASYTENSOR_HOME", str(home))
    return home


def test_paths(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.home() == clean_env
    assert config.default_store() == clean_env / "store"
    assert config.admin_key_path() == clean_env / "admin_key"
    assert config.server_info_path(Path("/x")) == Path("/x/server.json")
    monkeypatch.delenv("EASYTENSOR_HOME")
    assert config.home() == Path.home() / ".easytensor"


def test_admin_key_created_private_then_reused(clean_env: Path) -> None:
    key, created = config.ensure_admin_key()
    assert created and key.startswith("et_admin_") and len(key) > 40
    assert config.admin_key_path().stat().st_mode & 0o777 == 0o600
    assert config.ensure_admin_key() == (key, False)
    assert config.read_admin_key() == key
    assert not list(clean_env.glob(".*.tmp"))


def test_environment_key_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EASYTENSOR_API_KEY", "from-env")
    assert config.ensure_admin_key() == ("from-env", False)
    assert not config.admin_key_path().exists()
    assert config.resolve_api_key() == "from-env"
    assert config.resolve_api_key("explicit") == "explicit"


def test_resolve_api_key_falls_back_to_file() -> None:
    assert config.resolve_api_key() is None
    key, _ = config.ensure_admin_key()
    assert config.resolve_api_key() == key


def test_server_info_lifecycle() -> None:
    assert config.read_server_info() is None
    info = config.ServerInfo(url="http://127.0.0.1:1", pid=os.getpid(), store="/s", owner_pid=None)
    config.write_server_info(info)
    assert config.server_info_path().stat().st_mode & 0o777 == 0o600
    assert config.read_server_info() == info
    config.remove_server_info(os.getpid() + 1)
    assert config.read_server_info() == info
    config.remove_server_info(os.getpid())
    assert not config.server_info_path().exists()


def test_server_info_of_a_dead_process_is_ignored() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    config.write_server_info(config.ServerInfo(url="http://x", pid=child.pid, store="/s"))
    assert config.read_server_info() is None
    config.server_info_path().write_text("{broken")
    assert config.read_server_info() is None


def test_resolve_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from easytensor_jupyter import servers

    assert config.resolve_url() is None
    servers.register("http://embedded:1", store="/s", embedded=True)
    assert config.resolve_url() == "http://embedded:1"
    monkeypatch.setenv("EASYTENSOR_URL", "http://env:2/")
    assert config.resolve_url() == "http://env:2"
    assert config.resolve_url("http://arg:3/") == "http://arg:3"
