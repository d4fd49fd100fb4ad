"""A real ``easytensor serve`` process for tests, and what tests do with it.

Every server writes its output to a log file in its home (a pipe nobody reads would fill up and
block it); ``stop`` makes sure the server's workers are gone too.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from bundles import Bundle

__all__ = ["RunningServer", "alive", "start_server", "wait_until"]

LISTENING = re.compile(r"EasyTensor server listening on (http://\S+)")


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc); the workers of a server."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass
class RunningServer:
    url: str
    admin_key: str
    home: Path
    store: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    workers_seen: set[int] = field(default_factory=set)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self) -> list[int]:
        pids = _children(self.proc.pid)
        self.workers_seen.update(pids)
        return pids

    def upload(
        self,
        bundle: Bundle,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> requests.Response:
        hdrs = {**self.admin, "Content-Type": "application/x-tar", **(headers or {})}
        return requests.post(
            f"{self.url}/v1/models",
            params=params,
            data=bundle.stream(skip),
            headers=hdrs,
            timeout=120,
        )

    def predict(
        self, model_id: str, instances: list[Any], token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_key}"}
        return requests.post(
            f"{self.url}/v1/models/{model_id}/predict",
            json={"instances": instances},
            headers=headers,
            timeout=60,
            **kwargs,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Stop the server and make sure none of its workers outlive it."""
        if self.proc.poll() is None:
            self.worker_pids()
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in self.workers_seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.workers_seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self.proc.returncode


def start_server(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    store: Path | None = None,
    wait: float = 60,
) -> RunningServer:
    home.mkdir(parents=True, exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    full_env["EASYTENSOR_HOME"] = str(home)
    full_env.update(env or {})
    log_path = home / f"server-{uuid.uuid4().hex[:6]}.log"
    command = [sys.executable, "-m", "easytensor_jupyter.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", "0", *args]
    if store is not None:
        command += ["--store", str(store)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    deadline = time.monotonic() + wait
    url = None
    while url is None:
        match = LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            url = match.group(1)
        elif proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{log_path.read_text(errors='replace')}")
        else:
            time.sleep(0.05)
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    key = full_env.get("EASYTENSOR_API_KEY") or (home / "admin_key").read_text().strip()
    return RunningServer(url, key, home, store or home / "store", proc, log_path)


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
