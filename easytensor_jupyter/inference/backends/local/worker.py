"""A worker process, one per loaded model version, and the requests it is working on.

Model code only ever runs in a worker: the server talks to it over a socketpair with msgpack
frames. A worker starts in the jail ``sandbox.Sandbox`` gives it (its own bundle folder
read-only, its own uid or user namespace, PID namespace, cgroup), with an environment from an
allowlist, so it learns neither the store path nor the admin key. A prediction past its
timeout kills the worker, and with it its PID namespace: every process it started; a worker
that dies fails its pending requests, and the next query starts a fresh one.
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
    WorkerOutputTooLarge,
    WorkerRestarted,
    WorkerTimeout,
)
from easytensor_jupyter.inference.backends.local.sandbox import Jail, Sandbox
from easytensor_jupyter.inference.backends.local.spawn import Child, spawn
from easytensor_jupyter.inference.backends.local.streaming import WorkerStreams
from easytensor_jupyter.inference.backends.local.watchdog import (
    Watchdog,
    tree_cpu_seconds,
    tree_memory,
)
from easytensor_jupyter.inference.backends.local.workdir import (
    fill_dir,
    new_bundle_dir,
    plain_env,
)
from easytensor_jupyter.inference.runtime.protocol import (
    MAX_FRAME_BYTES,
    MAX_OUTPUT_BYTES,
    FrameError,
    FrameTooLarge,
    encode_frame,
    encode_request,
    predict_frame,
    read_frame,
)

__all__ = ["ExitReason", "Worker"]

log = logging.getLogger("easytensor.workers")

_DRAIN_ABOVE = 1 << 20
_FLUSH_ABOVE = 256 << 10
ExitReason = Literal["stopped", "crash", "timeout", "memory", "output", "cpu", "load_error"]
_WORKER_MAIN = "easytensor_jupyter.inference.backends.local.worker_main"


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
        sandbox: Sandbox | None = None,
        watchdog: Watchdog | None = None,
        max_output: int = MAX_OUTPUT_BYTES,
    ) -> None:
        self.spec = spec
        self.sandbox = sandbox
        self.jail: Jail | None = None
        self.max_output = max_output
        self._too_large: FrameTooLarge | None = None
        self.watchdog = watchdog
        self.memory_seen: int | None = None
        self.device = device
        self.threads = threads
        self.max_pending = max_pending
        self.on_exit = on_exit
        self.state: Literal["starting", "standby", "loading", "ready", "stopping", "dead"] = (
            "starting"
        )
        self.can_batch = False
        self.can_stream = False
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
        self.proc: Child | None = None
        self.dir: Path | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.streams = WorkerStreams(self._send, lambda: self.kill("timeout"), self._ids)

    @property
    def inflight(self) -> int:
        return len(self._pending) + self.streams.count

    def _send(self, frame: bytes) -> None:
        if self.state != "ready" or self._writer is None or self._writer.is_closing():
            raise WorkerRestarted("the worker is not running")
        self.last_used = time.monotonic()
        self._writer.write(frame)

    async def start(self, standby: bool = False) -> None:
        """Spawn the process; a standby one imports torch and waits for ``assign``."""
        self.dir = await asyncio.to_thread(new_bundle_dir, None if standby else self.spec)
        parent, child = socket.socketpair()
        python = (None if standby else self.spec.python) or sys.executable
        command = [python, "-m", _WORKER_MAIN, "--fd", str(child.fileno())]
        command += ["--device", self.device, "--threads", str(self.threads)]
        command += ["--max-output", str(self.max_output)] + (["--standby"] if standby else [])
        try:
            if self.sandbox is not None:
                env_binds = [str(self.spec.environment)] if self.spec.environment else []
                self.jail = await asyncio.to_thread(
                    self.sandbox.jail, self.dir, command, self.spec.label, env_binds
                )
                command, env, cwd = self.jail.command, self.jail.env, self.jail.cwd
            else:
                command += ["--dir", str(self.dir), "--parent-pid", str(os.getpid())]
                env, cwd = plain_env(self.threads), str(self.dir)
            self.proc = await spawn(command, pass_fds=(child.fileno(),), env=env, cwd=cwd)
        except BaseException:
            parent.close()
            self._release()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        finally:
            child.close()
        self.state = "standby" if standby else "loading"
        if self.watchdog is not None:
            self.watchdog.watch(self)
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
                message = await read_frame(reader, self.max_output)
                kind = message["t"]
                if kind == "results":
                    for result in message.get("results", []):
                        future = self._pending.get(result.get("id"))
                        if future is not None and not future.done():
                            future.set_result(list(result.get("outcomes", [])))
                elif kind == "stream":
                    self.streams.deliver(message.get("events") or [])
                elif kind == "ready" and self.state == "loading":
                    self.state = "ready"
                    self.can_batch = bool(message.get("batch"))
                    self.can_stream = bool(message.get("stream"))
                    if not self._ready.done():
                        self._ready.set_result(None)
                elif kind == "load_error" and not self._ready.done():
                    self._kill_reason = "load_error"
                    self._ready.set_exception(WorkerLoadError(dict(message.get("error") or {})))
                # A big batch's answer must not stay referenced until the next frame.
                del message
                result = future = None
        except FrameTooLarge as exc:
            log.warning("%s: the worker sent %s; stopping it", self.spec.label, exc)
            self._too_large = exc
            self.kill("output")
        except (asyncio.IncompleteReadError, ConnectionError, FrameError, OSError):
            pass
        await self._on_dead()

    def memory_used(self) -> int | None:
        """The worker tree's memory: its cgroup's, or the sum over its processes."""
        if self.jail is not None and self.jail.cgroup is not None:
            return self.jail.memory_used(self.watchdog.limit_bytes if self.watchdog else 0)
        return tree_memory(self.proc.pid) if self.proc is not None else None

    def _release(self) -> None:
        if self.jail is not None and self.sandbox is not None:
            self.sandbox.release(self.jail)
            self.jail = None

    async def _on_dead(self) -> None:
        assert self.proc is not None
        self.state = "dead"
        try:
            returncode = await asyncio.wait_for(self.proc.wait(), 2.0)
        except TimeoutError:
            self._killpg()
            returncode = await self.proc.wait()
        self._killpg()
        returncode = self.jail.exit_code(returncode) if self.jail is not None else returncode
        if self.watchdog is not None:
            self.watchdog.forget(self)
            used = self.memory_used() if self._kill_reason is None else None
            if used is not None and self.watchdog.limit_bytes and used > self.watchdog.limit_bytes:
                self._kill_reason, self.memory_seen = "memory", used
        await asyncio.to_thread(self._release)
        reason: ExitReason = self._kill_reason or "crash"
        error: WorkerError
        if reason == "output" and self._too_large is not None:
            error = WorkerOutputTooLarge(returncode, self._too_large.size, self._too_large.limit)
            log.warning("%s: %s", self.spec.label, error)
        elif reason == "memory" and self.watchdog is not None and self.memory_seen is not None:
            error = WorkerMemoryLimit(
                returncode, self.memory_seen / (1 << 20), self.watchdog.limit_mb
            )
            log.warning("%s: %s", self.spec.label, error)
        elif reason in ("crash", "memory", "output"):
            error = WorkerCrashed(returncode)
            log.warning("%s: %s", self.spec.label, error)
        elif reason == "timeout":
            error = WorkerRestarted("the worker was stopped because a request on it timed out")
        elif reason == "cpu":
            error = WorkerRestarted(
                "the worker was stopped: it kept computing with no request in flight "
                "(--worker-idle-cpu)"
            )
        else:
            error = WorkerRestarted("the worker was stopped")
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self.streams.fail(error)
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
        """Kill the worker's first process; in the sandbox its PID namespace goes with it."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.jail is not None and self.jail.cgroup is not None:
            self.jail.cgroup.kill()

    def cpu_seconds(self) -> float | None:
        return tree_cpu_seconds(self.proc.pid) if self.proc is not None else None

    def idle(self) -> bool:
        """Ready, nothing in flight, and past the second in which torch's threads spin down."""
        return self.state == "ready" and not self.inflight and time.monotonic() - self.last_used > 1

    @property
    def label(self) -> str:
        return self.spec.label

    def over_idle_cpu(self, used: float) -> None:
        self.kill("cpu")

    def over_memory(self, rss: int) -> None:
        self.memory_seen = rss
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
