"""Streamed predictions: ``POST /v1/models/{id}/predict`` asked for server-sent events
(``Accept: text/event-stream`` or ``?stream=true``) or NDJSON (``Accept: application/x-ndjson``).

Everything that can be refused before the model runs (credentials, an unknown model, a bad
body, a model without ``predict_stream``, a model that does not load) gets the ordinary JSON
error answer with its status. Once the stream is open the status is 200, and what follows is
one event per chunk, then either a ``done`` event with the version and timings or an ``error``
event shaped like the server's error body.

The answer is written by hand (not Starlette's ``StreamingResponse``) so that a client going
away is noticed while the model is still computing its next chunk: the stream is then closed
at once, which cancels it in the worker and runs the generator's ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from easytensor_jupyter.inference.api.bodies import BodyLease, PredictBodies
from easytensor_jupyter.inference.api.errors import APIError
from easytensor_jupyter.inference.api.predict import (
    _worker_error,
    count_query,
    decode_body,
    read_request,
    resolve_for_query,
)
from easytensor_jupyter.inference.backends.errors import (
    StreamTimeout,
    StreamUnsupported,
    WorkerError,
    WorkerModelError,
)
from easytensor_jupyter.inference.state import AppState
from easytensor_jupyter.inference.traffic import VERSION_HEADER

__all__ = ["StreamKind", "open_answer", "stream_kind", "stream_response"]

StreamKind = Literal["sse", "ndjson"]
_SSE = "text/event-stream"
_NDJSON = "application/x-ndjson"
_TRUE = ("1", "true", "yes", "on")


def stream_kind(request: Request, stream: str | None) -> StreamKind | None:
    """What the client asked for: SSE, NDJSON, or None for an ordinary answer."""
    accept = request.headers.get("accept", "").lower()
    if _NDJSON in accept:
        return "ndjson"
    if _SSE in accept:
        return "sse"
    if stream is None:
        return None
    value = stream.strip().lower()
    if value in _TRUE:
        return "sse"
    if value in ("0", "false", "no", "off", ""):
        return None
    raise APIError(
        422,
        "bad_stream_parameter",
        f"stream={stream!r} is not a yes or no; use ?stream=true (server-sent events), or "
        "Accept: application/x-ndjson for one JSON line per chunk",
    )


def _encode(kind: StreamKind, event: str, data: Any) -> bytes:
    """One event: ``data: CHUNK`` or ``event: done|error`` for SSE; for NDJSON a line
    ``{"chunk": CHUNK}``, ``{"done": true, ...}`` or ``{"error": {...}}``."""
    if kind == "ndjson":
        if event == "chunk":
            data = {"chunk": data}
        elif event == "done":
            data = {"done": True, **data}
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    payload = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    if event == "chunk":
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def _error_body(exc: WorkerError) -> dict[str, Any]:
    if isinstance(exc, WorkerModelError):
        error = exc.error
        code = str(error.get("code", "model_error"))
        return {"code": code, "message": str(error.get("message")), "detail": error.get("detail")}
    if isinstance(exc, StreamTimeout):
        return {"code": "stream_timeout", "message": str(exc), "detail": None}
    api = _worker_error(exc)
    return {"code": api.code, "message": api.message, "detail": api.detail}


class _StreamAnswer(Response):
    """Write the events as they come; stop the stream when the client disconnects."""

    def __init__(self, pieces: AsyncIterator[bytes], kind: StreamKind) -> None:
        super().__init__(status_code=200, media_type=_SSE if kind == "sse" else _NDJSON)
        self.headers["cache-control"] = "no-cache"
        self.headers["x-accel-buffering"] = "no"
        self.pieces = pieces
        del self.headers["content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await send(self._start())
            while True:
                step = asyncio.ensure_future(anext(self.pieces))
                await asyncio.wait((step, gone), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await step
                    return
                try:
                    piece = step.result()
                except StopAsyncIteration:
                    break
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return
        finally:
            gone.cancel()
            await self.pieces.aclose()  # type: ignore[attr-defined]

    def _start(self) -> Message:
        return {"type": "http.response.start", "status": 200, "headers": self.raw_headers}


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _events(
    state: AppState,
    chunks: AsyncIterator[Any],
    kind: StreamKind,
    model_id: str,
    version: int,
    started: float,
) -> AsyncIterator[bytes]:
    stats = state.stats_for(model_id)
    count = 0
    first: float | None = None
    outcome = "ok"
    try:
        try:
            async for chunk in chunks:
                if first is None:
                    first = time.perf_counter()
                count += 1
                yield _encode(kind, "chunk", chunk)
        except WorkerError as exc:
            error = _error_body(exc)
            outcome = error["code"]
            yield _encode(kind, "error", {"error": error})
            return
        elapsed = time.perf_counter() - started
        streaming = (time.perf_counter() - first) if first is not None else 0.0
        yield _encode(
            kind,
            "done",
            {
                "model_id": model_id,
                "version": version,
                "chunks": count,
                "first_chunk_ms": round((first - started) * 1000, 3) if first else None,
                "latency_ms": round(elapsed * 1000, 3),
                "chunks_per_s": round(count / streaming, 1) if streaming > 0 else None,
            },
        )
    except (GeneratorExit, asyncio.CancelledError):
        outcome = "client_disconnected"
        raise
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
        count_query(state, stats, model_id, outcome, time.perf_counter() - started)


async def stream_response(
    state: AppState, request: Request, model_id: str, version: int | None, kind: StreamKind
) -> Response:
    """The stream for a request that came the FastAPI way."""
    return await open_answer(
        state,
        request.app.state.bodies,
        model_id,
        version,
        kind,
        request.headers.get("content-type", "application/json"),
        lambda lease: read_request(request, lease),
    )


async def open_answer(
    state: AppState,
    bodies: PredictBodies,
    model_id: str,
    version: int | None,
    kind: StreamKind,
    content_type: str,
    read_body: Callable[[BodyLease], Awaitable[bytes]],
) -> _StreamAnswer:
    """Open the model's stream on the one input of the body; the answer writes its events.
    Shared by the route and ``fastpath``; refusals raise APIError before anything is sent."""
    started = time.perf_counter()
    record, _ = resolve_for_query(state, model_id, version, None)
    with bodies.lease() as lease:
        body = await read_body(lease)
        instances = await decode_body(content_type, body, bodies.limits, lease)
    if len(instances) != 1:
        raise APIError(
            422,
            "one_input_per_stream",
            f"a stream takes one input, and the body has {len(instances)}; send "
            '{"instances": [INPUT]}, or one request per input',
        )
    settings = state.settings
    try:
        chunks = await state.pool.open_stream(
            (model_id, record.version),
            lambda: state.spec(model_id, record.version, record.manifest),
            instances[0],
            settings.stream_chunk_timeout,
            settings.stream_timeout,
        )
    except StreamUnsupported:
        raise APIError(
            400,
            "stream_unsupported",
            f"{model_id} v{record.version} has no predict_stream method, so it cannot stream; "
            "define predict_stream(self, input) yielding chunks and deploy it again, or ask "
            "without streaming (no ?stream=true, no Accept: text/event-stream)",
        ) from None
    except WorkerError as exc:
        raise _worker_error(exc) from None
    events = _events(state, chunks, kind, model_id, record.version, started)
    answer = _StreamAnswer(events, kind)
    answer.headers[VERSION_HEADER] = str(record.version)
    return answer
