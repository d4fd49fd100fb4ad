"""The server's side of a worker's streams: chunks as they come, the two timeouts, cancelling.

A stream is one ``stream`` frame to the worker, then chunk events until an end event. Nothing
waits for the whole answer, so the only limits are time: no chunk within the per-chunk timeout
means the model is stuck inside ``predict_stream`` and the worker is restarted (as a prediction
past ``--predict-timeout`` is); a stream past the total timeout is cancelled in the worker, which
closes its generator. A consumer that stops early (its client went away) cancels it the same
way, from the ``finally`` of ``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from easytensor_jupyter.inference.backends.errors import (
    StreamTimeout,
    WorkerBusy,
    WorkerError,
    WorkerInputError,
    WorkerModelError,
    WorkerTimeout,
)
from easytensor_jupyter.inference.runtime.protocol import MAX_FRAME_BYTES, encode_frame

__all__ = ["MAX_QUEUED_CHUNKS", "WorkerStreams"]

MAX_QUEUED_CHUNKS = 4096
_END = object()


class WorkerStreams:
    """The streams open on one worker, keyed by their request id."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        kill: Callable[[], None],
        ids: itertools.count[int],
    ) -> None:
        self._send = send
        self._kill = kill
        self._ids = ids
        self._queues: dict[int, asyncio.Queue[Any]] = {}

    @property
    def count(self) -> int:
        return len(self._queues)

    def deliver(self, events: list[Any]) -> None:
        """Events from the worker's ``stream`` frame, into their streams' queues."""
        for event in events:
            if not isinstance(event, list) or len(event) != 3:
                continue
            queue = self._queues.get(event[0])
            if queue is None:
                continue
            if event[1] == "c":
                if queue.qsize() >= MAX_QUEUED_CHUNKS:
                    self._queues.pop(event[0], None)
                    self._cancel(event[0])
                    queue.put_nowait(WorkerBusy(_too_slow()))
                    continue
                queue.put_nowait(event[2])
            else:
                queue.put_nowait((_END, event[2]))

    def fail(self, error: WorkerError) -> None:
        """The worker died: every open stream ends with ``error``."""
        for queue in self._queues.values():
            queue.put_nowait(error)

    def _cancel(self, request_id: int) -> None:
        with contextlib.suppress(WorkerError, ConnectionError, OSError):
            self._send(encode_frame({"t": "cancel", "id": request_id}))

    async def run(
        self, instance: Any, chunk_timeout: float, total_timeout: float
    ) -> AsyncIterator[Any]:
        """The stream's chunks; raises a WorkerError (``WorkerModelError`` for the model's
        own) when it fails, after the chunks that came before."""
        request_id = next(self._ids)
        try:
            frame = encode_frame({"t": "stream", "id": request_id, "input": instance})
        except (ValueError, TypeError, OverflowError) as exc:
            raise WorkerInputError(f"the input cannot be passed to the model: {exc}") from None
        if len(frame) >= MAX_FRAME_BYTES - 64:
            raise WorkerInputError(f"the input is over the {MAX_FRAME_BYTES} byte frame limit")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queues[request_id] = queue
        deadline = time.monotonic() + total_timeout
        ended = False
        try:
            self._send(frame)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StreamTimeout(_total_message(total_timeout))
                try:
                    item = await asyncio.wait_for(queue.get(), min(chunk_timeout, left))
                except TimeoutError:
                    if left <= chunk_timeout:
                        raise StreamTimeout(_total_message(total_timeout)) from None
                    ended = True
                    self._kill()
                    raise WorkerTimeout(
                        f"the model yielded no chunk for {chunk_timeout:g} s "
                        "(--stream-chunk-timeout); the worker was restarted"
                    ) from None
                if isinstance(item, WorkerError):
                    ended = True
                    raise item
                if isinstance(item, tuple) and len(item) == 2 and item[0] is _END:
                    ended = True
                    if item[1] is not None:
                        raise WorkerModelError(dict(item[1]))
                    return
                yield item
        finally:
            self._queues.pop(request_id, None)
            if not ended:
                self._cancel(request_id)


def _total_message(total_timeout: float) -> str:
    return f"the stream ran past {total_timeout:g} s (--stream-timeout) and was stopped"


def _too_slow() -> str:
    return (
        f"the client read too slowly: over {MAX_QUEUED_CHUNKS} chunks waited for it; "
        "the stream was stopped"
    )
