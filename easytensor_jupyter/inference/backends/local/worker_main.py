"""Entry point of a worker process: load one model version, then answer predict frames.

Run as ``python -m easytensor_jupyter.inference.backends.local.worker_main --fd N --dir DIR``. The socket on
``--fd`` carries frames only; the model's own prints go to stdout/stderr, which the server reads
and prefixes. A reader thread keeps receiving while the model computes, so queued requests can
be handed to ``predict_batch`` together, and so the worker notices at once when the server is
gone (end of file) even in the middle of an endless ``predict_single``.
Streams (``predict_stream``) are stepped a chunk at a time between requests
(``runtime.streams``), so a long stream and quick predictions share the worker.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import queue
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from easytensor_jupyter.inference.runtime.protocol import (
    MAX_OUTPUT_BYTES,
    FrameError,
    encode_frame,
    recv_frame,
    send_events,
    send_frame,
)

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1
_UNBATCHED_CAP = 64
# Long enough to share a frame among a few answers, short enough that the server writes the
# first ones while the worker runs the rest: 0.2 ms gave the tiny model 21 to 35% more
# throughput than 1 ms at 8 to 32 connections (0.1 to 0.4 ms were alike).
_HOLD_S = 0.0002


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="easytensor-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--max-output", type=int, default=MAX_OUTPUT_BYTES)
    parser.add_argument("--max-files", type=int, default=None)
    parser.add_argument("--max-procs", type=int, default=None)
    parser.add_argument("--cpu-seconds", type=int, default=None)
    parser.add_argument(
        "--standby",
        action="store_true",
        help="import torch, then wait for a load frame before reading --dir",
    )
    return parser.parse_args(argv)


def _limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and 0 <= hard < value:
        value = hard
    resource.setrlimit(which, (value, value if which != resource.RLIMIT_CPU else value + 1))


def _confine(args: argparse.Namespace) -> None:
    """Close whatever was inherited but the socket, and set the rlimits the sandbox asked for.

    Done before any model code runs. ``RLIMIT_NPROC`` counts the processes of this uid (as
    root, a uid of the worker's own) or of this user namespace (as a normal user), so either
    way it bounds this worker's tree alone.
    """
    os.closerange(3, args.fd)
    os.closerange(args.fd + 1, 65536)
    if args.max_files is not None:
        _limit(resource.RLIMIT_NOFILE, args.max_files)
        _limit(resource.RLIMIT_CORE, 0)
    if args.max_procs is not None:
        _limit(resource.RLIMIT_NPROC, args.max_procs)
    if args.cpu_seconds is not None:
        _limit(resource.RLIMIT_CPU, args.cpu_seconds)


def _die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to kill us with the server, covering a server killed with SIGKILL mid-load.

    Only without the sandbox: inside it bubblewrap's ``--die-with-parent`` does this, and the
    worker's parent is the PID namespace's init, not the server.
    """
    if sys.platform != "linux" or parent_pid is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)


def _error(code: str, message: str, exc: BaseException | None = None) -> dict[str, Any]:
    detail = None
    if exc is not None:
        tail = "".join(traceback.format_exception(exc)).rstrip().splitlines()[-12:]
        detail = {"exception": type(exc).__name__, "traceback": "\n".join(tail)}
    return {"code": code, "message": message, "detail": detail}


def _reader(sock: socket.socket, inbox: queue.SimpleQueue[dict[str, Any] | None]) -> None:
    while True:
        try:
            frame = recv_frame(sock)
        except (OSError, FrameError):
            frame = None
        if frame is None:
            os._exit(0)
        if frame["t"] == "predict":
            for request in frame.get("requests", []):
                inbox.put(request)
        elif frame["t"] in ("stream", "cancel"):
            inbox.put(frame)
        elif frame["t"] == "shutdown":
            inbox.put(None)


def _encodable(outcome: list[Any]) -> list[Any]:
    try:
        encode_frame({"t": "probe", "v": outcome})
    except (TypeError, ValueError, OverflowError) as exc:
        return [False, _error("output_not_json", f"the output cannot be sent back: {exc}")]
    return outcome


def _frame(results: list[dict[str, Any]]) -> bytes:
    message = {"t": "results", "results": results}
    try:
        return encode_frame(message)
    except (TypeError, ValueError, OverflowError):
        for result in results:
            result["outcomes"] = [_encodable(o) for o in result["outcomes"]]
        return encode_frame(message)


def _too_large(result: dict[str, Any], size: int, limit: int) -> dict[str, Any]:
    message = (
        f"the answer is {size / (1 << 20):.1f} MB, over the server's {limit / (1 << 20):g} MB "
        "limit (--worker-max-output-mb); return less, or ask the operator to raise it"
    )
    error = [False, _error("output_too_large", message)]
    return {"id": result["id"], "outcomes": [error for _ in result["outcomes"]]}


def _send_results(sock: socket.socket, results: list[dict[str, Any]], limit: int) -> None:
    """One frame, or one per request when together they pass ``limit``; an answer over it
    alone becomes an ``output_too_large`` error, so the server never has to refuse a frame."""
    frame = _frame(results)
    if len(frame) <= limit:
        sock.sendall(frame)
        return
    for result in results:
        frame = _frame([result]) if len(results) > 1 else frame
        if len(frame) > limit:
            frame = _frame([_too_large(result, len(frame), limit)])
        sock.sendall(frame)


class _Server:
    """Takes requests off the inbox and runs them, together when the model can batch."""

    def __init__(self, sock: socket.socket, model: Any, batching: Any, max_output: int) -> None:
        self.sock = sock
        self.max_output = max_output
        self.model = model
        self.can_batch = model.batch_fn is not None
        self.max_items = batching.max_batch_size if batching is not None else _UNBATCHED_CAP
        self.max_wait = batching.max_wait_ms / 1000.0 if batching is not None else 0.0
        self.inbox: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.stopping = False
        from easytensor_jupyter.inference.runtime.streams import Streams

        self.streams = Streams(model.model, self.max_items, self.max_wait)

    def _side(self, item: dict[str, Any]) -> bool:
        """Handle a stream or cancel frame; False for an ordinary request."""
        kind = item.get("t")
        if kind == "stream":
            self._send_events(self.streams.add(int(item["id"]), item.get("input")))
        elif kind == "cancel":
            self.streams.cancel(int(item["id"]))
        return kind is not None

    def _send_events(self, events: list[list[Any]]) -> None:
        if events:
            for request_id in send_events(self.sock, events, self.max_output):
                self.streams.cancel(request_id)

    def _next(self) -> dict[str, Any] | None:
        """The next request, stepping the running streams while none waits."""
        while True:
            wait = self.streams.wait_s()
            try:
                if wait is None:
                    item = self.inbox.get()
                elif wait > 0:
                    item = self.inbox.get(timeout=wait)
                else:
                    item = self.inbox.get_nowait()
            except queue.Empty:
                self._send_events(self.streams.step())
                continue
            if item is None or not self._side(item):
                return item

    def _gather(self, first: dict[str, Any]) -> list[dict[str, Any]]:
        batch = [first]
        if not self.can_batch:
            return batch
        count = len(first["instances"])
        deadline = time.monotonic() + self.max_wait
        while count < self.max_items:
            remaining = deadline - time.monotonic()
            try:
                nxt = (
                    self.inbox.get(timeout=remaining) if remaining > 0 else self.inbox.get_nowait()
                )
            except queue.Empty:
                break
            if nxt is None:
                self.stopping = True
                break
            if self._side(nxt):
                continue
            batch.append(nxt)
            count += len(nxt["instances"])
        return batch

    def _run(self, instances: list[Any]) -> list[list[Any]]:
        step = self.max_items if self.can_batch else max(1, len(instances))
        outcomes: list[list[Any]] = []
        for start in range(0, len(instances), step):
            chunk = instances[start : start + step]
            try:
                outcomes += [o.to_wire() for o in self.model.predict(chunk)]
            except BaseException as exc:
                error = _error("model_error", f"predict raised {type(exc).__name__}: {exc}", exc)
                outcomes += [[False, error] for _ in chunk]
        return outcomes

    def serve(self) -> None:
        threading.Thread(target=_reader, args=(self.sock, self.inbox), daemon=True).start()
        while not self.stopping:
            first = self._next()
            if first is None:
                self.streams.close_all()
                return
            if not self.can_batch:
                _send_results(self.sock, self._run_queued(first), self.max_output)
                continue
            batch = self._gather(first)
            instances = [x for request in batch for x in request["instances"]]
            outcomes = self._run(instances)
            results = []
            at = 0
            for request in batch:
                n = len(request["instances"])
                results.append({"id": request["id"], "outcomes": outcomes[at : at + n]})
                at += n
            _send_results(self.sock, results, self.max_output)

    def _run_queued(self, first: dict[str, Any]) -> list[dict[str, Any]]:
        """Run ``first`` and whatever already waits behind it, one request at a time, and
        answer them in one frame: under load that halves the frames on both sides. Answers
        are held back at most ``_HOLD_S`` (plus the request running then), so a slow model
        still answers each request as soon as it is done."""
        results = []
        started = time.monotonic()
        request = first
        while True:
            results.append({"id": request["id"], "outcomes": self._run(request["instances"])})
            if len(results) >= _UNBATCHED_CAP or time.monotonic() - started > _HOLD_S:
                return results
            try:
                nxt = self.inbox.get_nowait()
            except queue.Empty:
                return results
            if nxt is None:
                self.stopping = True
                return results
            if self._side(nxt):
                return results
            request = nxt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    _confine(args)
    _die_with_parent(args.parent_pid)
    sock = socket.socket(fileno=args.fd)
    directory = Path(args.dir)
    try:
        import torch

        from easytensor_jupyter.bundle import MANIFEST_NAME, Manifest
        from easytensor_jupyter.inference.runtime.loader import LoadError, load_bundle_dir

        torch.set_num_threads(max(1, args.threads))
        if args.standby:
            frame = recv_frame(sock)
            if frame is None or frame["t"] != "load":
                return 0
        manifest = Manifest.parse_bytes((directory / MANIFEST_NAME).read_bytes())
        model = load_bundle_dir(directory, manifest, args.device)
    except LoadError as exc:
        send_frame(sock, {"t": "load_error", "error": exc.to_dict()})
        return 0
    except BaseException as exc:
        error = {"stage": "worker", "message": f"{type(exc).__name__}: {exc}", "detail": None}
        send_frame(sock, {"t": "load_error", "error": error})
        return 0
    server = _Server(sock, model, manifest.batching, args.max_output)
    ready = {"t": "ready", "pid": os.getpid(), "batch": model.batch_fn is not None}
    send_frame(sock, {**ready, "stream": server.streams.supported})
    server.serve()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
