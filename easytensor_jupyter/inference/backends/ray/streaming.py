"""Streams on Ray: the replica's generator method, and the control plane reading it.

A replica's ``stream`` runs the same worker stream as the local backend (the worker enforces
both timeouts) and yields msgpack bytes only, one item per chunk: ``{"open": true}`` first,
once the worker is ready and can stream, then ``{"c": chunk}`` items and ``{"end": true}``,
or ``{"fail": ...}`` with the error as data. The control plane asks through Ray Serve's
handle with ``stream=True``; leaving early cancels the Serve call, which closes the replica's
generator and with it the stream in the worker. Streams always take the handle, not the
direct connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgpack
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from easytensor_jupyter.inference.backends.errors import (
    StreamTimeout,
    StreamUnsupported,
    WorkerError,
    WorkerModelError,
    WorkerRestarted,
    WorkerTimeout,
)
from easytensor_jupyter.inference.backends.local.worker import Worker
from easytensor_jupyter.inference.backends.ray.envelope import decode_reply, error_reply

__all__ = ["open_serve_stream", "replica_stream"]

_MARGIN_S = 5.0


def _pack(item: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(item, use_bin_type=True)
    return packed


def _fail(exc: WorkerError) -> bytes:
    if isinstance(exc, WorkerModelError):
        return _pack({"fail": {"kind": "model", "error": exc.error}})
    if isinstance(exc, StreamTimeout):
        return _pack({"fail": {"kind": "stream_timeout", "message": str(exc)}})
    if isinstance(exc, StreamUnsupported):
        return _pack({"fail": {"kind": "unsupported", "message": str(exc)}})
    return _pack({"fail": {"kind": "envelope", "reply": error_reply(exc)}})


def _raise(fail: dict[str, Any]) -> None:
    kind = fail.get("kind")
    if kind == "model":
        raise WorkerModelError(dict(fail.get("error") or {}))
    if kind == "stream_timeout":
        raise StreamTimeout(str(fail.get("message")))
    if kind == "unsupported":
        raise StreamUnsupported(str(fail.get("message")))
    decode_reply(fail.get("reply"))
    raise WorkerError("the replica's stream failed")


async def replica_stream(
    live_worker: Callable[[], Awaitable[Worker]],
    instance: Any,
    chunk_timeout: float,
    total_timeout: float,
    load_error: dict[str, Any] | None = None,
) -> AsyncIterator[bytes]:
    """What ``ModelReplica.stream`` yields."""
    if load_error is not None:
        yield _pack({"fail": {"kind": "envelope", "reply": error_reply(load_error)}})
        return
    try:
        worker = await live_worker()
        if not worker.can_stream:
            raise StreamUnsupported("the model has no predict_stream method")
        chunks = worker.streams.run(instance, chunk_timeout, total_timeout)
        yield _pack({"open": True})
        try:
            async for chunk in chunks:
                yield _pack({"c": chunk})
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
    except WorkerError as exc:
        yield _fail(exc)
        return
    except OSError as exc:
        yield _fail(WorkerRestarted(f"the worker did not start: {exc}"))
        return
    yield _pack({"end": True})


async def open_serve_stream(
    handle: Any, instance: Any, chunk_timeout: float, total_timeout: float
) -> AsyncIterator[Any]:
    """Start the stream and wait for the replica to accept it, so that refusals come before
    any chunk; then the chunks."""
    responses = handle.options(stream=True, method_name="stream").remote(
        instance, chunk_timeout, total_timeout
    )
    wait = chunk_timeout + _MARGIN_S
    try:
        first = await _next(responses, wait)
    except BaseException:
        responses.cancel()
        raise
    if "fail" in first:
        responses.cancel()
        _raise(first["fail"])
    return _chunks(responses, wait)


async def _next(responses: Any, wait: float) -> dict[str, Any]:
    try:
        raw = await asyncio.wait_for(responses.__anext__(), wait)
    except StopAsyncIteration:
        raise WorkerRestarted("the replica ended the stream without its last item") from None
    except TimeoutError:
        raise WorkerTimeout(f"the replica sent nothing for {wait:g} s") from None
    except (RayError, RayServeException) as exc:
        raise WorkerRestarted(f"the replica serving this stream failed ({exc})") from None
    if not isinstance(raw, bytes):
        raise WorkerRestarted(f"the replica streamed a {type(raw).__name__}, not bytes")
    item: dict[str, Any] = msgpack.unpackb(raw, raw=False)
    return item


async def _chunks(responses: Any, wait: float) -> AsyncIterator[Any]:
    ended = False
    try:
        while True:
            item = await _next(responses, wait)
            if "c" in item:
                yield item["c"]
                continue
            ended = True
            if "fail" in item:
                _raise(item["fail"])
            return
    finally:
        if not ended:
            with contextlib.suppress(Exception):
                responses.cancel()
