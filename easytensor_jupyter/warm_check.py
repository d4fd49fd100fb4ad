"""The fresh-process check without paying for a fresh ``import torch`` each time.

A warm parent is started once per notebook process, in a clean environment (never forked from
the kernel, so no notebook state reaches it). It imports torch and the runtime, then waits. For
each check it forks a child that has never run user code; the child loads the bundle, answers
the sample, reports, and exits. The parent itself never imports model code. If the warm parent
cannot be had, the caller falls back to a new interpreter per check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["WarmChecker", "shared_checker"]

_READY = b"ready\n"
_START_TIMEOUT_S = 60.0


class WarmChecker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._path: str | None = None
        self._folder: str | None = None

    def _start(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="easytensor-warm-")
        self._path = str(Path(self._folder) / "check.sock")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "easytensor_jupyter.warm_check",
                "--socket",
                self._path,
                "--owner",
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=self._folder,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line != _READY:
            self.close()
            raise RuntimeError("the warm check process did not start")

    def ensure_started(self) -> bool:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return True
            try:
                self._start()
            except (OSError, RuntimeError):
                return False
            return True

    def start_in_background(self) -> None:
        threading.Thread(target=self.ensure_started, daemon=True).start()

    def check(self, directory: Path, device: str, timeout: float) -> dict[str, Any] | None:
        """The report, or None when the warm parent is unavailable (use a new interpreter)."""
        if not self.ensure_started():
            return None
        assert self._path is not None
        request = {"dir": str(directory.resolve()), "device": device, "timeout": timeout}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout + 10)
            try:
                conn.connect(self._path)
                conn.sendall(json.dumps(request).encode() + b"\n")
                data = conn.makefile("rb").readline()
            except OSError:
                return None
        if not data:
            return {
                "ok": False,
                "crashed": True,
                "error": {"stage": "check", "message": "the check process died"},
            }
        report: dict[str, Any] = json.loads(data)
        return report

    def close(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=5)
            self._proc = None
        if self._folder is not None:
            with contextlib.suppress(OSError):
                Path(self._path or "").unlink(missing_ok=True)
                Path(self._folder).rmdir()
            self._folder = None


_shared: WarmChecker | None = None


def shared_checker() -> WarmChecker:
    global _shared
    if _shared is None:
        _shared = WarmChecker()
    return _shared


# -- the warm parent -----------------------------------------------------------------------
def _child(conn: socket.socket, request: dict[str, Any]) -> None:
    """In the forked child: check the bundle and write one JSON line back."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.alarm(max(1, int(request.get("timeout", 300))))
    os.chdir(tempfile.mkdtemp(prefix="easytensor-check-"))
    from easytensor_jupyter.inference.backends.local.check_main import run_check

    try:
        report = run_check(Path(request["dir"]), str(request.get("device", "cpu")))
    except Exception as exc:
        report = {
            "ok": False,
            "error": {"stage": "load", "message": f"{type(exc).__name__}: {exc}"},
        }
    conn.sendall(json.dumps(report).encode() + b"\n")


def serve(path: str, owner: int) -> None:
    import torch  # noqa: F401  (the point: children start with it imported)

    import easytensor_jupyter.inference.backends.local.check_main  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    Path(path).chmod(0o600)
    listener.listen(8)
    listener.settimeout(1.0)
    sys.stdout.buffer.write(_READY)
    sys.stdout.flush()
    # Nobody reads on after the ready line: what model code prints must not fill a pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    while os.getppid() == owner:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(10)
            try:
                request = json.loads(conn.makefile("rb").readline())
            except (OSError, ValueError):
                continue
            if os.fork() == 0:
                listener.close()
                try:
                    _child(conn, request)
                finally:
                    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Warm parent for fresh-process model checks.")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--owner", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.socket, args.owner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
