"""The embedded server: one per ``EASYTENSOR_HOME``, started by whoever needs it first.

The server watches its owner's pid and exits with it, so a kernel that started it leaves
nothing behind; a file lock stops two kernels starting two servers at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from easytensor_jupyter import config, servers

__all__ = [
    "EmbeddedServerError",
    "ensure_server",
    "running_server",
    "start_early",
    "stop_server",
]

START_TIMEOUT_S = 60.0
log = logging.getLogger("easytensor")


class EmbeddedServerError(RuntimeError):
    pass


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def running_server(base: Path | None = None) -> config.ServerInfo | None:
    """The embedded server for this home if it is up and answering."""
    info = config.read_server_info(base)
    return info if info is not None and _healthy(info.url) else None


@contextmanager
def _start_lock(base: Path) -> Iterator[None]:
    base.mkdir(parents=True, exist_ok=True)
    with (base / "server.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_server(
    base: Path | None = None,
    *,
    owner_pid: int | None = None,
    owner: str | None = None,
    timeout: float = START_TIMEOUT_S,
) -> config.ServerInfo:
    """Return the running embedded server, starting one owned by ``owner_pid`` (default: us).

    ``owner`` says who that is (``easytensor server`` shows it); by default a notebook kernel or
    the program's name.
    """
    base = base or config.home()
    info = running_server(base)
    if info is not None:
        return info
    with _start_lock(base):
        info = running_server(base)
        if info is not None:
            return info
        return _start(base, owner_pid or os.getpid(), owner or servers.default_owner(), timeout)


def start_early() -> threading.Thread | None:
    """Start the embedded server in the background when nothing else would serve this kernel.

    Called at ``%load_ext``: the server (and its spare worker) then imports torch while the
    user writes the model, and the first deploy finds it up. A failure here is not reported:
    the first deploy starts the server again and reports that attempt's error.
    """
    from easytensor_jupyter.headless import DRY_RUN_ENV

    # A dry run (easytensor deploy --dry-run) uploads nothing, so it needs no server.
    if os.environ.get("EASYTENSOR_EARLY_SERVER", "1") == "0" or os.environ.get(DRY_RUN_ENV):
        return None

    def start() -> None:
        from easytensor_jupyter.client import resolve_server

        try:
            if resolve_server() is None:
                ensure_server()
        except Exception as exc:
            log.debug("the embedded server did not start early: %s", exc)

    thread = threading.Thread(target=start, name="easytensor-early-server", daemon=True)
    thread.start()
    return thread


def _start(base: Path, owner_pid: int, owner: str, timeout: float) -> config.ServerInfo:
    log_path = base / "server.log"
    env = dict(os.environ, EASYTENSOR_HOME=str(base))
    env[servers.OWNER_ENV] = owner
    command = [
        sys.executable,
        "-m",
        "easytensor_jupyter.cli",
        "serve",
        "--port",
        "0",
        "--embedded",
        "--owner-pid",
        str(owner_pid),
    ]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedServerError(
                f"The embedded EasyTensor server exited at start (code {proc.returncode}). "
                f"Its log is {log_path}:\n{_tail(log_path)}"
            )
        info = config.read_server_info(base)
        if info is not None and info.pid == proc.pid and _healthy(info.url):
            return info
        time.sleep(0.1)
    proc.kill()
    raise EmbeddedServerError(
        f"The embedded EasyTensor server did not start within {timeout:g} s; see {log_path}"
    )


def stop_server(base: Path | None = None, timeout: float = 10.0) -> bool:
    """Stop the embedded server of this home; False when none was running."""
    info = config.read_server_info(base)
    if info is None:
        return False
    try:
        os.kill(info.pid, 15)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.kill(info.pid, 9)
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
