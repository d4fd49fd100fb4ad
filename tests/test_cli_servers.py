"""The command line finds the servers running on this machine, as a newcomer's shell would.

Each command runs as a real ``easytensor`` process with nothing configured but
``EASYTENSOR_HOME``; questions are answered through a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import RunningServer

CLI = [sys.executable, "-m", "easytensor_jupyter.cli"]
PROMPT = re.compile(rb"\[[^\]]*\] $")


def shell_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    env["EASYTENSOR_HOME"] = str(home)
    env.update(extra)
    return env


def run(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=shell_env(home, **extra),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_in_terminal(home: Path, args: list[str], answer: str, **extra: str) -> tuple[int, str, str]:
    """Run with stdin and stderr on a pseudo-terminal, answer the first question, and return
    ``(exit code, stdout, what the terminal showed)``."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, *args],
        env=shell_env(home, **extra),
        stdin=terminal,
        stderr=terminal,
        stdout=subprocess.PIPE,
        text=True,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 60
    while not PROMPT.search(shown) and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            shown += os.read(controller, 4096)
    os.write(controller, answer.encode() + b"\n")
    out, _ = proc.communicate(timeout=60)
    while True:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if not ready:
            break
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return proc.returncode, out, shown.decode(errors="replace")


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunningServer]]:
    """One home with one ``easytensor serve`` running in it, for the whole module."""
    from servers import start_server

    home = tmp_path_factory.mktemp("cli-home")
    running = start_server(home, "--no-standby")
    try:
        yield home, running
    finally:
        running.stop()


def test_with_nothing_configured_the_running_server_is_used_and_named(
    shared_home: tuple[Path, RunningServer],
) -> None:
    home, running = shared_home
    listed = run(home, "models", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"models": []}
    assert listed.stderr.startswith(
        f"Using {running.url} (easytensor serve, pid {running.proc.pid}, started "
    )
    assert "Traceback" not in listed.stderr


def test_easytensor_server_lists_what_runs(shared_home: tuple[Path, RunningServer]) -> None:
    home, running = shared_home
    text = run(home, "server")
    assert text.returncode == 0, text.stderr
    header, row, *rest = text.stdout.splitlines()
    assert header.split() == ["URL", "PID", "STARTED", "STATE", "STARTED", "BY"]
    assert row.startswith(running.url) and f" {running.proc.pid} " in row
    assert row.rstrip().endswith("0 models       easytensor serve")
    assert "Commands use this one when given no --url or EASYTENSOR_URL." in rest
    payload = json.loads(run(home, "server", "--json").stdout)
    assert [(s["url"], s["pid"], s["answering"]) for s in payload["servers"]] == [
        (running.url, running.proc.pid, True)
    ]
    pointed = run(home, "server", EASYTENSOR_URL="http://127.0.0.1:9")
    assert "Commands use EASYTENSOR_URL=http://127.0.0.1:9" in pointed.stdout


def test_no_server_is_a_shell_answer_not_python_advice(tmp_path: Path) -> None:
    empty = run(tmp_path, "models")
    assert empty.returncode == 1
    message = empty.stderr
    assert message.startswith("error: No EasyTensor server is running on this machine")
    for words in ("easytensor serve", "--url URL", "EASYTENSOR_URL=URL"):
        assert words in message, message
    assert "url=..." not in message and "ensure_server" not in message
    listing = run(tmp_path, "server")
    assert listing.returncode == 0 and "No EasyTensor server is running for" in listing.stdout


def test_an_unreachable_url_names_where_it_came_from(tmp_path: Path) -> None:
    down = run(tmp_path, "models", EASYTENSOR_URL="http://127.0.0.1:9")
    assert down.returncode == 1
    assert "Cannot reach the EasyTensor server at http://127.0.0.1:9 (from EASYTENSOR_URL)" in (
        down.stderr
    )
    assert "--url" in down.stderr and "easytensor server" in down.stderr


def test_several_servers_are_listed_or_asked_about(
    shared_home: tuple[Path, RunningServer], spawn_server: Callable[..., RunningServer]
) -> None:
    home, first = shared_home
    second = spawn_server("--no-standby", home=home)
    refused = run(home, "models")
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert lines[0] == "error: 2 EasyTensor servers are running on this machine:"
    assert lines[1].startswith(f"  {first.url} (easytensor serve, pid {first.proc.pid}")
    assert lines[2].startswith(f"  {second.url} (easytensor serve, pid {second.proc.pid}")
    assert lines[3] == "Choose one with --url URL or EASYTENSOR_URL=URL."
    chosen = run(home, "models", "--json", "--url", second.url)
    assert chosen.returncode == 0 and "Using" not in chosen.stderr

    code, out, shown = run_in_terminal(home, ["models", "--json"], "2")
    assert code == 0, shown
    assert json.loads(out) == {"models": []}
    assert f"1) {first.url}" in shown and f"2) {second.url}" in shown
    assert f"Using {second.url} (easytensor serve, pid {second.proc.pid}" in shown
    second.stop()
    again = run(home, "models", "--json")
    assert again.returncode == 0 and again.stderr.startswith(f"Using {first.url} ")
