"""The query panel for a streaming model: the answer grows as chunks arrive, with the time to
the first chunk and the chunks per second beside it."""

from __future__ import annotations

import time
from html import escape
from typing import Any

import ipywidgets as widgets

from easytensor_jupyter.bundle import joined_chunks
from easytensor_jupyter.client import Client
from easytensor_jupyter.widgets._render import answer_html
from easytensor_jupyter.widgets._state import Query, format_latency

__all__ = ["StreamResult", "stream_html", "stream_query"]

_REFRESH_S = 0.05


class StreamResult:
    def __init__(self, answer: Any, version: int | None, latency_ms: float) -> None:
        self.answer = answer
        self.version = version
        self.latency_ms = latency_ms


def stream_html(
    chunks: int, first_ms: float | None, rate: float | None, version: int | None, done: bool
) -> str:
    parts = [f"{chunks} chunk{'s' if chunks != 1 else ''}"]
    if first_ms is not None:
        parts.append(f"first chunk {format_latency(first_ms)}")
    if rate is not None:
        parts.append(f"{rate:,.1f} chunks/s")
    if version is not None:
        parts.append(f"v{version}")
    spinner = "" if done else '<i class="fa fa-spinner fa-spin"></i> '
    return spinner + escape(" \u00b7 ".join(parts))


def _instance(query: Query) -> Any:
    return query.data or b"" if query.mode == "file" else query.value


def stream_query(
    client: Client,
    model_id: str,
    query: Query,
    answer: widgets.HTML,
    status: widgets.HTML,
    *,
    token: str | None,
    version: int | None,
) -> StreamResult:
    """Stream ``query`` into the ``answer`` and ``status`` widgets; raises EasyTensorError."""
    started = time.perf_counter()
    stream = client.stream(model_id, _instance(query), token=token, version=version)
    shown = 0.0
    with stream:
        for _ in stream:
            now = time.perf_counter()
            if now - shown >= _REFRESH_S:
                shown = now
                first = stream.first_chunk_s
                count = len(stream.chunks)
                rate = (
                    (count - 1) / (now - started - first)
                    if first and now - started > first
                    else None
                )
                answer.value = answer_html(joined_chunks(stream.chunks))
                status.value = stream_html(
                    count, first * 1000 if first else None, rate, None, False
                )
    info = stream.info or {}
    elapsed = (time.perf_counter() - started) * 1000
    first_ms = stream.first_chunk_s * 1000 if stream.first_chunk_s is not None else None
    result = joined_chunks(stream.chunks)
    answer.value = answer_html(result)
    status.value = stream_html(
        len(stream.chunks), first_ms, info.get("chunks_per_s"), info.get("version"), True
    )
    return StreamResult(result, info.get("version"), elapsed)
