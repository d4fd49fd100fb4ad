"""A worker process, one per loaded model version, and the requests it is working on.

Model code only ever runs in a worker: the server talks to it over a socketpair with msgpack
frames. A worker gets a private folder of hard links to its version's files, and an environment
without any ``EASYTENSOR_*`` variable, so it learns neither the store path nor the admin key.
A prediction past its timeout kills the worker's whole process group; a worker that dies fails
its pending requests, and the next query starts a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from easytensor_jupyter.inference.backends.base import WorkerSpec
from easytensor_jupyter.inference.backends.errors import (
    WorkerBusy,
    WorkerCrashed,
    WorkerError,
    WorkerInputError,
    WorkerLoadError,
    WorkerMemoryLimit,
    WorkerRestarted,
    WorkerTimeout,
)
from easytensor_jupyter.inference.backends.local.sandbox import SandboxPolicy, wrap_command
from easytensor_jupyter.inference.backends.local.watchdog import MemoryWatchdog
from easytensor_jupyter.inference.backends.local.workdir import fill_dir, prepare_dir, worker_env
from easytensor_jupyter.inference.runtime.protocol import (
    MAX_FRAME_BYTES,
    FrameError,
    encode_frame,
    encode_request,
    predict_frame,
    read_frame,
)

__all__ = ["ExitReason", "Worker"]

log = logging.getLogger("easytensor.workers")

_DRAIN_ABOVE = 1 << 20
_FLUSH_ABOVE = 256 << 10
ExitReason = Literal["stopped", "crash", "timeout", "memory", "load_error"]


class Worker:
    """One worker process and the futures of the requests it is working on."""

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        device: str,
        threads: int,
        max_pending: int,
        on_exit: Callable[[Worker, ExitReason], None],
        sandbox: SandboxPolicy | None = None,
        watchdog: MemoryWatchdog | None = None,
    ) -> None:
        self.spec = spec
        self.sandbox = sandbox
        self.watchdog = watchdog
        self.memory_used: int | None = None
        self.device = device
        self.threads = threads
        self.max_pending = max_pending
        self.on_exit = on_exit
        self.state: Literal["starting", "standby", "loading", "ready", "stopping", "dead"] = (
            "starting"
        )
        self.can_batch = False
        self.last_used = time.monotonic()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[list[Any]]] = {}
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._dead = asyncio.Event()
        self._kill_reason: ExitReason | None = None
        self._write_lock = asyncio.Lock()
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.dir: Path | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def inflight(self) -> int:
        return len(self._pending)

    async def start(self, standby: bool = False) -> None:
        """Spawn the process; a standby one imports torch and waits for ``assign``."""
        self.dir = await asyncio.to_thread(prepare_dir, None if standby else self.spec)
        parent, child = socket.socketpair()
        command = [
            sys.executable,
            "-m",
            "easytensor_jupyter.inference.backends.local.worker_main",
            "--fd",
            str(child.fileno()),
            "--dir",
            str(self.dir),
            "--device",
            self.device,
            "--threads",
            str(self.threads),
            "--parent-pid",
            str(os.getpid()),
        ]
        command += ["--standby"] if standby else []
        env = worker_env(self.threads)
        if self.sandbox is not None:
            command = wrap_command(command, self.sandbox, self.dir, env["PYTHONPATH"])
            env["HOME"] = env["TMPDIR"] = str(self.dir)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(child.fileno(),),
                env=env,
                cwd=str(self.dir),
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        finally:
            child.close()
        self.state = "standby" if standby else "loading"
        if self.watchdog is not None:
            self.watchdog.watch(self, self.proc.pid, self._over_memory)
        reader, self._writer = await asyncio.open_connection(sock=parent)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._tasks = [
            asyncio.create_task(self._read_loop(reader)),
            asyncio.create_task(self._pump(self.proc.stdout)),
            asyncio.create_task(self._pump(self.proc.stderr)),
        ]

    async def assign(self, spec: WorkerSpec) -> None:
        """Give a standby worker its model: fill its folder, then tell it to load."""
        if self.state != "standby" or self.dir is None or self._writer is None:
            raise WorkerRestarted("the standby worker is gone")
        self.spec = spec
        await asyncio.to_thread(fill_dir, self.dir, spec)
        self.state = "loading"
        self._writer.write(encode_frame({"t": "load"}))
        await self._writer.drain()

    async def wait_ready(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            self.kill("timeout")
            raise WorkerTimeout(f"the model did not load within {timeout:g} s") from None

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_frame(reader)
                kind = message["t"]
                if kind == "results":
                    for result in message.get("results", []):
                        future = self._pending.get(result.get("id"))
                        if future is not None and not future.done():
                            future.set_result(list(result.get("outcomes", [])))
                elif kind == "ready" and self.state == "loading":
                    self.state = "ready"
                    self.can_batch = bool(message.get("batch"))
                    if not self._ready.done():
                        self._ready.set_result(None)
                elif kind == "load_error" and not self._ready.done():
                    self._kill_reason = "load_error"
                    self._ready.set_exception(WorkerLoadError(dict(message.get("error") or {})))
        except (asyncio.IncompleteReadError, ConnectionError, FrameError, OSError):
            pass
        await self._on_dead()

    async def _on_dead(self) -> None:
        assert self.proc is not None
        self.state = "dead"
        try:
            returncode = await asyncio.wait_for(self.proc.wait(), 2.0)
        except TimeoutError:
            self._killpg()
            returncode = await self.proc.wait()
        self._killpg()
        if self.watchdog is not None:
            self.watchdog.forget(self)
        reason: ExitReason = self._kill_reason or "crash"
        error: WorkerError
        if reason == "memory" and self.watchdog is not None and self.memory_used is not None:
            error = WorkerMemoryLimit(
                returncode, self.memory_used / (1 << 20), self.watchdog.limit_mb
            )
            log.warning("%s: %s", self.spec.label, error)
        elif reason in ("crash", "memory"):
            error = WorkerCrashed(returncode)
            log.warning("%s: %s", self.spec.label, error)
        elif reason == "timeout":
            error = WorkerRestarted("the worker was stopped because a request on it timed out")
        else:
            error = WorkerRestarted("the worker was stopped")
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        if self._writer is not None:
            self._writer.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self._dead.set()
        self.on_exit(self, reason)

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        out = sys.stderr.buffer
        rest = b""
        while chunk := await stream.read(65536):
            *lines, rest = (rest + chunk).split(b"\n")
            if len(rest) > 65536:
                lines.append(rest)
                rest = b""
            if lines:
                prefix = f"[{self.spec.label}] ".encode()
                out.write(b"".join(prefix + line + b"\n" for line in lines))
                out.flush()
        if rest:
            out.write(f"[{self.spec.label}] ".encode() + rest + b"\n")
            out.flush()

    async def predict(self, instances: list[Any], timeout: float) -> list[Any]:
        """Outcomes ``[ok, value]`` per instance; raises a WorkerError subclass on failure."""
        if self.state != "ready" or self._writer is None:
            raise WorkerRestarted("the worker is not running")
        if len(self._pending) >= self.max_pending:
            raise WorkerBusy(f"{len(self._pending)} requests are already waiting for this model")
        request_id = next(self._ids)
        try:
            packed = encode_request(request_id, instances)
        except (ValueError, TypeError, OverflowError) as exc:
            raise WorkerInputError(f"the input cannot be passed to the model: {exc}") from None
        if len(packed) >= MAX_FRAME_BYTES - 64:
            raise WorkerInputError(f"the input is over the {MAX_FRAME_BYTES} byte frame limit")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending[request_id] = future
        self.last_used = time.monotonic()
        timer = loop.call_later(timeout, self._expire, future, timeout)
        try:
            self._enqueue(packed, loop)
            transport = self._writer.transport
            if transport.get_write_buffer_size() > _DRAIN_ABOVE:
                await self._drain()
            return await future
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
            self.last_used = time.monotonic()

    def _enqueue(self, packed: bytes, loop: asyncio.AbstractEventLoop) -> None:
        """Queue a packed request; all queued in this event-loop turn leave in one frame.

        Requests that arrive together under load then cost the worker one read and one wake-up
        instead of one each. A large request (or a full outbox) is written at once.
        """
        first = not self._outbox
        self._outbox.append(packed)
        self._outbox_bytes += len(packed)
        if self._outbox_bytes > _FLUSH_ABOVE:
            self._flush()
        elif first:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        requests, self._outbox, self._outbox_bytes = self._outbox, [], 0
        if not requests or self._writer is None or self._writer.is_closing():
            return
        self._writer.write(predict_frame(requests))

    async def _drain(self) -> None:
        """Wait for a large frame to leave; one waiter at a time, as asyncio prefers."""
        assert self._writer is not None
        async with self._write_lock:
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.drain()

    def _expire(self, future: asyncio.Future[list[Any]], timeout: float) -> None:
        if not future.done():
            future.set_exception(WorkerTimeout(f"the prediction took longer than {timeout:g} s"))
            self.kill("timeout")

    def _killpg(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _over_memory(self, rss: int) -> None:
        self.memory_used = rss
        self.kill("memory")

    def kill(self, reason: ExitReason) -> None:
        if self.state == "dead":
            return
        self.state = "stopping"
        self._kill_reason = self._kill_reason or reason
        self._killpg()

    async def stop(self, grace: float = 1.0) -> None:
        """Close the socket (the worker exits at end of file), then kill whatever is left."""
        if self.proc is None:
            return
        if self.state != "dead":
            self.state = "stopping"
        self._kill_reason = self._kill_reason or "stopped"
        if self._writer is not None:
            self._writer.close()
        try:
            await asyncio.wait_for(self._dead.wait(), grace)
        except TimeoutError:
            self._killpg()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dead.wait(), 5.0)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 1.0)
