"""The request log's writer: requests are noted in memory and written to the registry in batches.

A prediction only appends a tuple to a deque (the body it already holds, the answer it already
built); turning that into stored JSON, the insert and the retention sweep all happen in a
background thread, a batch at a time. When the writer falls behind, new notes are dropped and
counted rather than let memory grow: the log is a record of traffic, never a brake on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from easytensor_jupyter.inference.store import Store
from easytensor_jupyter.inference.store.request_log import LogRow, LogSettings, new_log_id

__all__ = ["LOG_MODES", "LogLimits", "RequestLog", "parse_mode", "records_of"]

log = logging.getLogger("easytensor.server")

LOG_MODES = ("off", "errors", "sample:P", "all")
_MAX_PENDING = 20_000
_MAX_PENDING_BYTES = 64 << 20
_BATCH = 1000
_TICK_S = 0.5
_SLICE = 50


def parse_mode(text: str) -> tuple[str, float]:
    """``off``, ``errors``, ``all`` or ``sample:P`` (P a fraction 0-1, or a percentage ``5%``)."""
    value = text.strip().lower()
    if value in ("off", "errors", "all"):
        return value, 1.0
    if value.startswith("sample:"):
        raw = value[len("sample:") :]
        try:
            rate = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except ValueError:
            rate = -1.0
        if 0.0 <= rate <= 1.0:
            return "sample", rate
    raise ValueError(
        f"unknown request log setting {text!r}: use off, errors, all or sample:P "
        "with P between 0 and 1 (sample:0.1) or a percentage (sample:10%)"
    )


@dataclass(frozen=True)
class LogLimits:
    """What a record keeps of a request, and how much of the log a model may hold."""

    keep: int = 10_000
    keep_bytes: int = 64 << 20
    max_input_bytes: int = 64 << 10
    max_blob_bytes: int = 1 << 20
    redact: bool = False


# model, version, kind, status, code, latency ms, token label, content type, body or None,
# body size, predictions or error, agrees
Note = tuple[str, int, str, int, str, float, Any, str, Any, int, Any, Any, float]


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _input_of(
    content_type: str, body: bytes | None, size: int, status: int, limits: LogLimits
) -> tuple[str | None, bytes | None, str | None]:
    """(JSON text of the input, raw bytes instance, a note saying what was left out).

    An answered JSON body is kept as it came, ``{"instances": [...]}`` (it parsed once
    already); readers take its instances out.
    """
    if limits.redact:
        return None, None, "redacted (--log-redact)"
    mime = "application/json" if content_type == "application/json" else _mime(content_type)
    binary = mime == "application/octet-stream" or mime.startswith("image/")
    cap = limits.max_blob_bytes if binary else limits.max_input_bytes
    if body is None or size > cap:
        return None, None, f"input of {size:,} bytes not kept (over the log's {cap:,}-byte cap)"
    if binary:
        return None, bytes(body), None
    if mime == "text/plain":
        text = bytes(body).decode("utf-8", errors="replace")
        return orjson.dumps([text]).decode(), None, None
    if status < 400:
        return bytes(body).decode("utf-8"), None, None
    try:
        instances = orjson.loads(body)["instances"]
    except (orjson.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        return None, None, "input was not a JSON instances list"
    return orjson.dumps(instances).decode(), None, None


def _output_of(answer: Any, cap: int) -> str | None:
    try:
        text = orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return None
    if len(text) > cap:
        return orjson.dumps({"omitted": f"answer of {len(text):,} bytes over the cap"}).decode()
    return text


def records_of(notes: list[Note], limits: LogLimits) -> list[LogRow]:
    rows = []
    for note in notes:
        (
            model,
            version,
            kind,
            status,
            code,
            latency,
            label,
            ctype,
            body,
            size,
            answer,
            agrees,
            ts,
        ) = note
        text, blob, missing = _input_of(ctype, body, size, status, limits)
        rows.append(
            LogRow(
                new_log_id(ts),
                model,
                ts,
                version,
                kind,
                status,
                code,
                round(latency, 3),
                label,
                text,
                blob,
                missing,
                _output_of(answer, limits.max_input_bytes),
                agrees,
            )
        )
    return rows


class RequestLog:
    """Decides which requests to keep, and writes them in the background."""

    def __init__(self, store: Store, default_mode: str, limits: LogLimits) -> None:
        self.store = store
        self.default = parse_mode(default_mode)
        self.limits = limits
        self.modes: dict[str, tuple[str, float]] = {}
        self.retention: dict[str, tuple[int, int]] = {}
        self.totals: dict[str, list[int]] = {}
        self.pending: deque[Note] = deque()
        self.pending_bytes = 0
        self.dropped = 0
        self.written = 0
        self._wake: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None

    def apply(self, settings: dict[str, LogSettings]) -> None:
        """Take the models' own settings (from the registry)."""
        modes, retention = {}, {}
        for model_id, s in settings.items():
            if s.mode:
                with contextlib.suppress(ValueError):
                    modes[model_id] = parse_mode(s.mode)
            if s.keep is not None or s.keep_bytes is not None:
                retention[model_id] = (
                    s.keep if s.keep is not None else self.limits.keep,
                    s.keep_bytes if s.keep_bytes is not None else self.limits.keep_bytes,
                )
        self.modes, self.retention = modes, retention

    def mode_of(self, model_id: str) -> str:
        mode, rate = self.modes.get(model_id, self.default)
        return f"sample:{rate:g}" if mode == "sample" else mode

    def wants(self, model_id: str, failed: bool) -> bool:
        mode, rate = self.modes.get(model_id, self.default)
        if mode == "all":
            return True
        if mode == "off":
            return False
        if mode == "errors":
            return failed
        return random.random() < rate

    def note(self, note: Note) -> None:
        size = note[9] if note[8] is not None else 0
        if len(self.pending) >= _MAX_PENDING or self.pending_bytes + size > _MAX_PENDING_BYTES:
            self.dropped += 1
            return
        self.pending.append(note)
        self.pending_bytes += size
        if len(self.pending) >= _BATCH and self._wake is not None:
            self._wake.set()

    def _take(self) -> list[Note]:
        batch: list[Note] = []
        while self.pending and len(batch) < _BATCH:
            note = self.pending.popleft()
            if note[8] is not None:
                self.pending_bytes -= note[9]
            batch.append(note)
        return batch

    def _write(self, batch: list[Note]) -> None:
        self._store(records_of(batch, self.limits))

    def _store(self, rows: list[LogRow]) -> None:
        """Insert rows; sweep a model's log only once it passes a bound, and then down to
        nine tenths of it, so sweeps come once per tenth of the log, not once per batch."""
        self.store.requests.insert(rows)
        self.written += len(rows)
        added: dict[str, list[int]] = {}
        for r in rows:
            counts = added.setdefault(r.model_id, [0, 0])
            counts[0] += 1
            counts[1] += r.size
        for model_id, (count, size) in added.items():
            keep, keep_bytes = self.retention.get(
                model_id, (self.limits.keep, self.limits.keep_bytes)
            )
            totals = self.totals.get(model_id)
            if totals is None or self.store.shared:
                totals = self.totals[model_id] = list(self.store.requests.totals(model_id))
            else:
                totals[0] += count
                totals[1] += size
            if totals[0] > keep or totals[1] > keep_bytes:
                low = (max(1, keep * 9 // 10), max(1, keep_bytes * 9 // 10))
                self.store.requests.prune(model_id, *low)
                self.totals[model_id] = list(self.store.requests.totals(model_id))

    def executor(self) -> ThreadPoolExecutor:
        """One thread of its own, with its own registry connection: writes stay in order,
        and that connection may trade durability of the log's last moments for fewer disk
        flushes. Policy reads run here too."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                1, "easytensor-request-log", initializer=self.store.requests.relax
            )
        return self._executor

    async def flush(self) -> None:
        executor = self.executor()
        loop = asyncio.get_running_loop()
        while self.pending:
            batch = self._take()
            try:
                # Records are built here, a slice at a time between requests: built in the
                # writer's thread, the two threads would pass the GIL back and forth.
                rows: list[LogRow] = []
                for start in range(0, len(batch), _SLICE):
                    rows += records_of(batch[start : start + _SLICE], self.limits)
                    await asyncio.sleep(0)
                await loop.run_in_executor(executor, self._store, rows)
            except Exception:
                log.exception(
                    "writing %d request log records failed; they were dropped", len(batch)
                )
                self.dropped += len(batch)

    async def run(self) -> None:
        """The background writer: a batch every tick, or sooner when one fills up."""
        self._wake = asyncio.Event()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _TICK_S)
            self._wake.clear()
            await self.flush()
