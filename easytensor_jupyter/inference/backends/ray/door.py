"""A replica's own door: ``wire`` frames from control planes that know its secret.

It answers each request with the same envelope bytes the replica returns through Ray Serve,
so errors look the same on either path. It has no Ray in it, which is what lets the tests
drive it and the router over real loopback sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from easytensor_jupyter.inference.backends.errors import WorkerError, WorkerInputError
from easytensor_jupyter.inference.backends.ray.envelope import error_reply
from easytensor_jupyter.inference.backends.ray.wire import AUTH_LIMIT, FrameError, frame, read_frame

__all__ = ["Door", "Handler"]

log = logging.getLogger("easytensor.ray")
Handler = Callable[[list[Any]], Awaitable[bytes]]
_FLUSH_ABOVE = 1 << 20


class Door:
    def __init__(self, handler: Handler, label: str = "replica") -> None:
        self.handler = handler
        self.label = label
        self.token = secrets.token_urlsafe(32)
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._peers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, host: str) -> int:
        self._server = await asyncio.start_server(self._serve, host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def close(self) -> None:
        """Stop listening and tell every peer this replica is going; safe to call twice."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for peer in list(self._peers):
            with contextlib.suppress(Exception):
                peer.write(frame([0, "drain"]))
                peer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = await read_frame(reader, AUTH_LIMIT)
            token = hello.get("token") if isinstance(hello, dict) else None
            if not isinstance(token, str) or not hmac.compare_digest(
                token.encode(), self.token.encode()
            ):
                return
            writer.write(frame({"ok": True}))
            self._peers.add(writer)
            while True:
                message = await read_frame(reader)
                if not isinstance(message, list) or len(message) != 2:
                    return
                task = asyncio.get_running_loop().create_task(self._answer(writer, *message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, FrameError, OSError):
            return
        finally:
            self._peers.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, request_id: Any, instances: Any) -> None:
        try:
            if not isinstance(instances, list):
                raise WorkerInputError("the instances must be a list")
            reply = await self.handler(instances)
        except WorkerError as exc:
            reply = error_reply(exc)
        except Exception as exc:  # answered, so the control plane does not wait in vain
            log.exception("%s: a direct request failed", self.label)
            reply = error_reply(WorkerError(f"the replica failed: {type(exc).__name__}"))
        if writer.is_closing():
            return
        writer.write(frame([request_id, reply]))
        if writer.transport.get_write_buffer_size() > _FLUSH_ABOVE:
            with contextlib.suppress(OSError):
                await writer.drain()
