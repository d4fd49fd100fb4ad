"""A streamed prediction as the client sees it: an iterator of chunks, then the final info.

It asks for NDJSON (one JSON line per chunk, a last ``{"done": true, ...}`` line, or
``{"error": ...}``), which needs no event parser; the browser's playground asks for the same
lines. Leaving the loop early, or ``close()``, drops the connection, which stops the model's
generator on the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import requests

from easytensor_jupyter.bundle import joined_chunks
from easytensor_jupyter.errors import EasyTensorError

__all__ = ["ChunkStream"]


class ChunkStream:
    """Iterate for the chunks; ``info`` then holds the server's final line (version, chunks,
    first_chunk_ms, latency_ms, chunks_per_s), ``chunks`` what came, ``first_chunk_s`` the
    time to the first chunk as this client measured it."""

    def __init__(self, response: requests.Response, started: float) -> None:
        self.response = response
        self.started = started
        self.chunks: list[Any] = []
        self.info: dict[str, Any] | None = None
        self.first_chunk_s: float | None = None
        self._lines = response.iter_lines(chunk_size=None)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            line = self._next_line()
        except requests.RequestException as exc:
            self.close()
            raise EasyTensorError(f"the stream broke off: {exc}", code="stream_broken") from exc
        if line is None:
            self.close()
            if self.info is None:
                raise EasyTensorError(
                    "the stream ended without its final line; the server may have stopped",
                    code="stream_broken",
                )
            raise StopIteration
        if "chunk" in line:
            if self.first_chunk_s is None:
                self.first_chunk_s = time.perf_counter() - self.started
            self.chunks.append(line["chunk"])
            return line["chunk"]
        if "error" in line:
            self.close()
            error = line["error"] or {}
            raise EasyTensorError(
                str(error.get("message", "the stream failed")),
                status=self.response.status_code,
                code=str(error.get("code", "error")),
                detail=error.get("detail"),
            )
        self.info = {k: v for k, v in line.items() if k != "done"}
        self.close()
        raise StopIteration

    def _next_line(self) -> dict[str, Any] | None:
        for raw in self._lines:
            if raw:
                value = json.loads(raw)
                if isinstance(value, dict):
                    return value
        return None

    def joined(self) -> Any:
        return joined_chunks(self.chunks)

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
