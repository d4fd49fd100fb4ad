"""Streams inside a worker: the model's ``predict_stream`` generators, stepped a chunk at a time.

The worker's loop interleaves them with ordinary predictions, so a long stream never blocks a
quick query. Every step advances each running group by one chunk: a group is one stream's
``predict_stream(input)``, or with ``predict_stream_batch(inputs)`` the streams that arrived
together (within the model's ``max_wait_ms``, up to ``max_batch_size``), stepped as one batch.
That generator yields one list per step, an entry per input: the next chunk of that stream, or
``None`` once the stream has finished. Streams that arrive while a batch runs form the next
batch, and the batches take turns.

A stream the server cancels (its client went away, or its total time ran out) has its
generator closed at once, so the model's ``finally`` runs; a batch is closed when none of its
streams is still wanted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from easytensor_jupyter.inference.runtime.loader import (
    NotJSONableError,
    to_jsonable,
    traceback_tail,
)

__all__ = ["MAX_SAMPLE_CHUNKS", "StreamEvent", "Streams", "collect_stream", "stream_error"]

MAX_SAMPLE_CHUNKS = 100_000

StreamEvent = list[Any]
"""``[id, "c", chunk]`` for a chunk, ``[id, "e", None | error]`` for the end of a stream."""


def stream_error(exc: BaseException, where: str) -> dict[str, Any]:
    return {
        "code": "model_error",
        "message": f"{where} raised {type(exc).__name__}: {exc}",
        "detail": {"exception": type(exc).__name__, "traceback": traceback_tail(exc)},
    }


@dataclass
class _Group:
    ids: list[int]
    gen: Iterator[Any]
    batched: bool
    live: set[int] = field(default_factory=set)


class Streams:
    """The streams one worker is running, and those waiting to start as a batch."""

    def __init__(
        self,
        model: Any,
        max_batch: int,
        max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.single = _method(model, "predict_stream")
        self.batch = _method(model, "predict_stream_batch")
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait_s
        self.clock = clock
        self.groups: list[_Group] = []
        self.waiting: list[tuple[int, Any]] = []
        self.first_wait = 0.0

    @property
    def supported(self) -> bool:
        return self.single is not None or self.batch is not None

    @property
    def busy(self) -> bool:
        return bool(self.groups)

    def add(self, request_id: int, instance: Any) -> list[StreamEvent]:
        """Take a new stream; events at once only when it cannot start."""
        if not self.supported:
            error = {
                "code": "stream_unsupported",
                "message": "the model has no predict_stream method",
                "detail": None,
            }
            return [[request_id, "e", error]]
        if not self.waiting:
            self.first_wait = self.clock()
        self.waiting.append((request_id, instance))
        return []

    def wait_s(self) -> float | None:
        """How long the worker may block for new requests: None for as long as it likes."""
        if self.groups:
            return 0.0
        if self.waiting:
            return max(0.0, self.first_wait + self.max_wait - self.clock())
        return None

    def cancel(self, request_id: int) -> None:
        self.waiting = [(i, x) for i, x in self.waiting if i != request_id]
        for group in list(self.groups):
            if request_id in group.live:
                group.live.discard(request_id)
                if not group.live:
                    self._close(group)

    def _start_waiting(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self.batch is None:
            for request_id, instance in self.waiting:
                events += self._open([request_id], [instance], batched=False)
            self.waiting = []
            return events
        if not self.waiting or not self._batch_due():
            return events
        while self.waiting:
            taken, self.waiting = self.waiting[: self.max_batch], self.waiting[self.max_batch :]
            ids = [i for i, _ in taken]
            single = len(taken) == 1 and self.single is not None
            events += self._open(ids, [x for _, x in taken], batched=not single)
        return events

    def _batch_due(self) -> bool:
        return (
            len(self.waiting) >= self.max_batch or self.clock() >= self.first_wait + self.max_wait
        )

    def _open(self, ids: list[int], inputs: list[Any], batched: bool) -> list[StreamEvent]:
        try:
            with torch.inference_mode():
                if batched:
                    assert self.batch is not None
                    gen = iter(self.batch(list(inputs)))
                else:
                    assert self.single is not None
                    gen = iter(self.single(inputs[0]))
        except Exception as exc:
            name = "predict_stream_batch" if batched else "predict_stream"
            error = stream_error(exc, name)
            return [[i, "e", error] for i in ids]
        self.groups.append(_Group(ids, gen, batched, set(ids)))
        return []

    def step(self) -> list[StreamEvent]:
        """One chunk from every running group (a list of chunks from a batch)."""
        events = self._start_waiting()
        for group in list(self.groups):
            events += self._step(group)
        return events

    def _step(self, group: _Group) -> list[StreamEvent]:
        name = "predict_stream_batch" if group.batched else "predict_stream"
        try:
            with torch.inference_mode():
                item = next(group.gen)
        except StopIteration:
            self.groups.remove(group)
            return [[i, "e", None] for i in group.ids if i in group.live]
        except Exception as exc:
            self.groups.remove(group)
            error = stream_error(exc, name)
            return [[i, "e", error] for i in group.ids if i in group.live]
        if not group.batched:
            return self._chunks(group, [item])
        if not isinstance(item, list | tuple) or len(item) != len(group.ids):
            self._close(group)
            size = len(item) if isinstance(item, list | tuple) else type(item).__name__
            error = {
                "code": "bad_stream_batch",
                "message": f"predict_stream_batch yielded {size} for {len(group.ids)} streams; "
                "yield one list per step with an entry per input (None once it has ended)",
                "detail": None,
            }
            return [[i, "e", error] for i in group.ids if i in group.live]
        return self._chunks(group, list(item))

    def _chunks(self, group: _Group, items: list[Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for request_id, value in zip(group.ids, items, strict=True):
            if request_id not in group.live:
                continue
            if group.batched and value is None:
                group.live.discard(request_id)
                events.append([request_id, "e", None])
                continue
            try:
                events.append([request_id, "c", to_jsonable(value, "chunk")])
            except NotJSONableError as exc:
                group.live.discard(request_id)
                message = str(exc).replace("from predict_single", "from predict_stream")
                error = {"code": "output_not_json", "message": message, "detail": None}
                events.append([request_id, "e", error])
        if not group.live:
            self._close(group)
        return events

    def _close(self, group: _Group) -> None:
        if group in self.groups:
            self.groups.remove(group)
        close = getattr(group.gen, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                print(f"closing a stream raised {type(exc).__name__}: {exc}", flush=True)

    def close_all(self) -> None:
        for group in list(self.groups):
            self._close(group)


def _method(model: Any, name: str) -> Callable[..., Any] | None:
    method = getattr(model, name, None)
    return method if callable(method) else None


def collect_stream(model: Any, instance: Any, limit: int = MAX_SAMPLE_CHUNKS) -> list[Any]:
    """Every chunk of one stream as JSON, for the parity check: ``predict_stream(instance)``,
    or the first column of ``predict_stream_batch([instance])``."""
    single = _method(model, "predict_stream")
    batch = _method(model, "predict_stream_batch")
    chunks: list[Any] = []
    with torch.inference_mode():
        if single is not None:
            items: Iterator[Any] = iter(single(instance))
        elif batch is not None:
            items = (row[0] for row in batch([instance]))
        else:
            raise TypeError("the model has no predict_stream method")
        for item in items:
            if single is None and item is None:
                break
            chunks.append(to_jsonable(item, f"chunk {len(chunks)}"))
            if len(chunks) > limit:
                raise ValueError(
                    f"the stream of the sample passed {limit:,} chunks; give a sample whose "
                    "stream ends"
                )
    return chunks
