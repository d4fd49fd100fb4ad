"""Server records in EASYTENSOR_HOME: written by real servers, stale ones ignored, one chosen."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from servers import RunningServer, wait_until

from easytensor_jupyter import config, servers


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("EASYTENSOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_record_is_private_and_read_back(home: Path) -> None:
    record = servers.register("http://127.0.0.1:1", store="/s", embedded=False)
    path = servers.records_dir() / f"{os.getpid()}.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert servers.running() == [record]
    assert record.owner == "easytensor serve" and record.pid == os.getpid()
    assert record.describe().startswith(
        f"http://127.0.0.1:1 (easytensor serve, pid {os.getpid()}, started "
    )
    servers.unregister(record)
    assert servers.running() == [] and not path.exists()


def test_stale_records_are_ignored_and_removed(home: Path) -> None:
    live = servers.register("http://127.0.0.1:1", store="/s")
    gone = replace(live, url="http://127.0.0.1:2", pid=_dead_pid())
    reused = replace(live, url="http://127.0.0.1:3", pid=os.getppid(), process_start="1")
    for record in (gone, reused):
        config.write_private_file(
            servers.records_dir() / f"{record.pid}.json", json.dumps(asdict(record))
        )
    (servers.records_dir() / "junk.json").write_text("{not json")
    assert servers.running() == [live]
    assert not (servers.records_dir() / f"{gone.pid}.json").exists()
    assert not (servers.records_dir() / f"{reused.pid}.json").exists()


def test_resolve_prefers_argument_then_environment_then_the_one_running(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert servers.resolve() is None
    record = servers.register("http://127.0.0.1:1", store="/s")
    found = servers.resolve()
    assert found is not None and (found.url, found.source, found.record) == (
        "http://127.0.0.1:1",
        "running",
        record,
    )
    monkeypatch.setenv("EASYTENSOR_URL", "http://env:2/")
    assert servers.resolve() == servers.Resolved("http://env:2", "environment")
    assert servers.resolve("http://arg:3/") == servers.Resolved("http://arg:3", "argument")
    assert config.resolve_url() == "http://env:2"


def test_several_running_are_listed_unless_a_chooser_picks(home: Path) -> None:
    first = servers.register("http://127.0.0.1:1", store="/s")
    second = replace(first, url="http://127.0.0.1:2", pid=os.getppid(), process_start=None)
    config.write_private_file(
        servers.records_dir() / f"{second.pid}.json", json.dumps(asdict(second))
    )
    with pytest.raises(servers.SeveralServers) as err:
        servers.resolve(advice="Pick with --url.")
    message = str(err.value)
    assert message.startswith("2 EasyTensor servers are running on this machine:")
    assert "http://127.0.0.1:1 (easytensor serve" in message and "http://127.0.0.1:2 (" in message
    assert message.endswith("Pick with --url.")
    offered: list[str] = []

    def choose(found: Sequence[servers.ServerRecord]) -> servers.ServerRecord:
        offered.extend(r.url for r in found)
        return next(r for r in found if r.url.endswith(":2"))

    picked = servers.resolve(choose=choose)
    assert sorted(offered) == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert picked is not None and (picked.url, picked.record) == ("http://127.0.0.1:2", second)


def test_embedded_records_say_who_owns_them(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(servers.OWNER_ENV, "Jupyter")
    record = servers.register("http://127.0.0.1:1", store="/s", embedded=True, owner_pid=42)
    assert record.owner == "embedded, for Jupyter (pid 42)"


def test_a_real_server_records_itself_and_cleans_up(
    spawn_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    running = spawn_server("--no-standby", home=tmp_path / "serve-home")
    found = servers.running(running.home)
    assert [(r.url, r.pid, r.owner, r.embedded) for r in found] == [
        (running.url, running.proc.pid, "easytensor serve", False)
    ]
    assert found[0].store == str(running.store)
    running.stop()
    assert servers.running(running.home) == []
    assert list((running.home / "servers").glob("*.json")) == []


def test_a_killed_server_leaves_a_record_that_is_ignored(
    spawn_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    running = spawn_server("--no-standby", home=tmp_path / "kill-home")
    running.proc.send_signal(signal.SIGKILL)
    running.proc.wait(10)
    leftover = list((running.home / "servers").glob("*.json"))
    assert len(leftover) == 1
    wait_until(lambda: servers.running(running.home) == [], 5, "the dead server's record to go")
