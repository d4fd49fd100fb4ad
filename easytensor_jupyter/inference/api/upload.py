"""Request bodies: the size limit, and the bridge from the async body to the sync bundle reader.

``bundle.read_bundle_stream`` is plain blocking code (tarfile, hashlib, file writes), so it runs
in a thread and reads from a ``BodyBridge`` that an async task fills from the request. The
bridge holds a few megabytes at most: when the thread falls behind, the pump stops reading the
socket, and the client is slowed down instead of the server filling its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, cast

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from easytensor_jupyter.bundle import BundleError, Limits, ReceivedBundle, read_bundle_stream
from easytensor_jupyter.inference.api.bodies import BodyBudget, BodyLease
from easytensor_jupyter.inference.api.errors import APIError, error_response
from easytensor_jupyter.inference.store import Store
from easytensor_jupyter.inference.store.blobs import PinningSink, StoreFull, is_disk_full

__all__ = ["SMALL_BODY_BYTES", "BodyBridge", "BodyLimitMiddleware", "receive_bundle"]

_HIGH_WATER = 8 << 20
SMALL_BODY_BYTES = 1 << 20
# JSON decodes to at most about this many times its size (a body of empty lists).
_WORST_JSON_RATIO = 64
_MAX_READERS = 8
_executor: ThreadPoolExecutor | None = None


def _readers() -> ThreadPoolExecutor:
    """Upload threads of their own: a slow client holds one for as long as it sends, and must
    not starve the default pool that short store writes use."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(_MAX_READERS, thread_name_prefix="easytensor-upload")
    return _executor


def _too_large(limit: int, flag: str | None = "--max-body-mb") -> APIError:
    where = f"({flag})" if flag else "for this route"
    return APIError(
        413,
        "too_large",
        f"the request body is over the {limit / (1 << 20):g} MB limit {where}",
        {"limit_bytes": limit},
        headers={"Connection": "close"},
    )


def _is_predict(path: str) -> bool:
    return path == "/query/" or (path.startswith("/v1/models/") and path.endswith("/predict"))


def _store_full(exc: OSError) -> APIError:
    return APIError(507, "store_full", str(StoreFull(exc.strerror or str(exc))))


class BodyLimitMiddleware:
    """Refuse a too-large Content-Length before reading a byte; count a chunked body as it comes.

    Bundle uploads (admin only) have their own, much larger limit: a model's weights are routinely
    bigger than any query body should be. Other routes take small JSON bodies, which FastAPI
    decodes before it checks credentials, so they get a small fixed limit and take their worst
    decoded size from the shared budget. Predictions take theirs in ``api.predict``.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        upload_max_bytes: int | None = None,
        budget: BodyBudget | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_max_bytes = upload_max_bytes
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit: int
        flag: str | None
        lease = None
        if self.upload_max_bytes is not None and scope["method"] == "POST" and path == "/v1/models":
            limit, flag = self.upload_max_bytes, "--max-upload-mb"
        elif _is_predict(path):
            limit, flag = self.max_bytes, "--max-body-mb"
        else:
            limit, flag = min(self.max_bytes, SMALL_BODY_BYTES), None
            lease = BodyLease(self.budget) if self.budget is not None else None
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                response = error_response(400, "bad_request", "Content-Length is not a number")
                await response(scope, receive, send)
                return
            if length > limit:
                err = _too_large(limit, flag)
                response = error_response(
                    err.status, err.code, err.message, err.detail, err.headers
                )
                await response(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                received += size
                if received > limit:
                    raise _too_large(limit, flag)
                if lease is not None:
                    await lease.take(size * _WORST_JSON_RATIO)
            return message

        try:
            await self.app(scope, counting_receive, send)
        finally:
            if lease is not None:
                lease.release()


class _Aborted(OSError):
    """The request body ended abnormally; the async side knows why."""


class BodyBridge(io.RawIOBase):
    def __init__(self, loop: asyncio.AbstractEventLoop, high_water: int = _HIGH_WATER) -> None:
        super().__init__()
        self._loop = loop
        self._high = high_water
        self._cond = threading.Condition()
        self._chunks: deque[bytes | memoryview] = deque()
        self._size = 0
        self._eof = False
        self._failed = False
        self._abandoned = False
        self._discard = False
        self._space = asyncio.Event()

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes from the oldest received piece: a whole piece is handed over as
        it came, without a copy (the bundle reader hashes and stores pieces of any size)."""
        with self._cond:
            while not self._chunks and not self._eof and not self._failed:
                self._cond.wait()
            if self._failed:
                raise _Aborted("the request body ended abnormally")
            if not self._chunks:
                return b""
            head = self._chunks[0]
            if size is None or size < 0 or size >= len(head):
                self._chunks.popleft()
                data = head
            else:
                view = memoryview(head)
                data, self._chunks[0] = view[:size], view[size:]
            self._size -= len(data)
            if self._size <= self._high // 2:
                self._loop.call_soon_threadsafe(self._space.set)
        return data if isinstance(data, bytes) else bytes(data)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    async def pump(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in chunks:
                if self._abandoned:
                    return
                if self._discard:
                    continue
                if chunk:
                    with self._cond:
                        self._chunks.append(chunk)
                        self._size += len(chunk)
                        self._cond.notify()
                while self._size > self._high and not (self._abandoned or self._discard):
                    self._space.clear()
                    await self._space.wait()
        except BaseException:
            with self._cond:
                self._failed = True
                self._cond.notify_all()
            raise
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def discard(self) -> None:
        """Read the rest of the body and drop it, so the client gets to read our answer."""
        self._discard = True
        self._space.set()

    def abandon(self) -> None:
        """The reader is done (or failed): stop pumping."""
        self._abandoned = True
        self._space.set()


async def receive_bundle(
    request: Request, store: Store, limits: Limits
) -> tuple[ReceivedBundle, PinningSink]:
    """Stream the body into the store; on success the caller must ``release()`` the sink."""
    bridge = BodyBridge(asyncio.get_running_loop())
    sink = PinningSink(store.blobs)
    pump = asyncio.create_task(bridge.pump(request.stream()))
    outcome: ReceivedBundle | BaseException
    try:
        stream = cast(IO[bytes], bridge)
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(_readers(), read_bundle_stream, stream, sink, limits)
    except (BundleError, _Aborted) as exc:
        outcome = exc
    except OSError as exc:
        if not is_disk_full(exc):
            bridge.abandon()
            pump.cancel()
            sink.release()
            await asyncio.to_thread(store.collect, sink.written)
            raise
        outcome = _store_full(exc)
        bridge.discard()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(pump), 60)
    except BaseException:
        bridge.abandon()
        pump.cancel()
        sink.release()
        await asyncio.to_thread(store.collect, sink.written)
        raise
    bridge.abandon()
    if not pump.done():
        pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await pump
        except (APIError, ClientDisconnect) as exc:
            outcome = exc
    if isinstance(outcome, ReceivedBundle):
        return outcome, sink
    sink.release()
    await asyncio.to_thread(store.collect, sink.written)
    if isinstance(outcome, APIError):
        raise outcome
    if isinstance(outcome, ClientDisconnect):
        raise APIError(400, "client_disconnected", "the client stopped sending the bundle")
    if isinstance(outcome, BundleError):
        raise APIError(outcome.status, outcome.code, str(outcome))
    raise APIError(400, "bad_bundle", "the bundle could not be read")
