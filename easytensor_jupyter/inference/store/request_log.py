"""Logged requests and each model's policy (log setting, retention, traffic) in the registry.

Rows arrive in batches from the server's background writer, never from a request. Ids are
microseconds since the epoch shifted left 10 bits plus a per-process counter, so they sort by
time, need no dialect-specific sequence, and servers sharing one PostgreSQL registry almost never
collide (a collision drops that one row: ``ON CONFLICT DO NOTHING``). Retention keeps the newest
rows of a model within both its count and its byte bound.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from easytensor_jupyter.inference.store.database import Database
from easytensor_jupyter.inference.store.records import NotFoundError

__all__ = ["LogRow", "LogSettings", "RequestLogTable", "new_log_id"]

_counter = itertools.count()
_counter_lock = threading.Lock()
_ROWS_PER_INSERT = 200
_COLUMNS = (
    "id, model_id, ts, version, kind, status, code, latency_ms, token_label, input, "
    "input_blob, input_note, output, agrees, size"
)


def new_log_id(ts: float) -> int:
    with _counter_lock:
        low = next(_counter) & 1023
    return (int(ts * 1_000_000) << 10) | low


@dataclass(slots=True)
class LogRow:
    """One request as stored: ``input`` and ``output`` are JSON text (or None)."""

    id: int
    model_id: str
    ts: float
    version: int
    kind: str
    status: int
    code: str
    latency_ms: float
    token_label: str | None
    input: str | None
    input_blob: bytes | None
    input_note: str | None
    output: str | None
    agrees: bool | None

    size: int = 0

    def __post_init__(self) -> None:
        self.size = (
            200
            + len(self.input or "")
            + len(self.input_blob or b"")
            + len(self.output or "")
            + len(self.token_label or "")
        )

    def as_args(self) -> tuple[object, ...]:
        agrees = None if self.agrees is None else int(self.agrees)
        return (
            self.id,
            self.model_id,
            self.ts,
            self.version,
            self.kind,
            self.status,
            self.code,
            self.latency_ms,
            self.token_label,
            self.input,
            self.input_blob,
            self.input_note,
            self.output,
            agrees,
            self.size,
        )


def _row(raw: Sequence[Any]) -> LogRow:
    blob = raw[10]
    return LogRow(
        int(raw[0]),
        raw[1],
        float(raw[2]),
        int(raw[3]),
        raw[4],
        int(raw[5]),
        raw[6],
        float(raw[7]),
        raw[8],
        raw[9],
        bytes(blob) if blob is not None else None,
        raw[11],
        raw[12],
        None if raw[13] is None else bool(raw[13]),
    )


@dataclass(frozen=True)
class LogSettings:
    """A model's own settings; None means the server's default."""

    mode: str | None = None
    keep: int | None = None
    keep_bytes: int | None = None
    traffic: dict[str, Any] | None = None


class RequestLogTable:
    def __init__(self, db: Database) -> None:
        self.db = db

    def relax(self) -> None:
        """For the log writer's own thread: on SQLite, sync the WAL at checkpoints only
        (``synchronous=NORMAL``: safe from corruption; a power cut may lose the newest
        records, never the registry's, which keeps ``FULL`` on every other connection)."""
        from easytensor_jupyter.inference.store.sqlite import SqliteDatabase

        if isinstance(self.db, SqliteDatabase):
            self.db.connection().execute("PRAGMA synchronous=NORMAL")

    def insert(self, rows: Sequence[LogRow]) -> None:
        """Many rows per statement: ``executemany`` steps once per row, and each step
        hands the GIL over and back, which under load costs the event loop more than the
        insert itself."""
        if not rows:
            return
        width = len(_COLUMNS.split(","))
        with self.db.write() as conn:
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                chunk = rows[start : start + _ROWS_PER_INSERT]
                marks = ", ".join(["(" + ", ".join("?" * width) + ")"] * len(chunk))
                args = [value for row in chunk for value in row.as_args()]
                conn.execute(
                    f"INSERT INTO request_log ({_COLUMNS}) VALUES {marks} "
                    "ON CONFLICT (id) DO NOTHING",
                    args,
                )

    def totals(self, model_id: str) -> tuple[int, int]:
        row = (
            self.db.connection()
            .execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM request_log WHERE model_id = ?",
                (model_id,),
            )
            .fetchone()
        )
        return int(row[0]), int(row[1])

    def shadow_summary(self, model_id: str, version: int) -> tuple[int, int, int]:
        """(shadow answers logged, how many agreed with the live one, how many failed)."""
        row = (
            self.db.connection()
            .execute(
                "SELECT count(*), coalesce(sum(agrees), 0), "
                "coalesce(sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) FROM request_log "
                "WHERE model_id = ? AND version = ? AND kind = 'shadow'",
                (model_id, version),
            )
            .fetchone()
        )
        return int(row[0]), int(row[1]), int(row[2])

    def prune(self, model_id: str, keep: int, keep_bytes: int) -> int:
        """Delete the oldest rows so that the newest ``keep`` rows, within ``keep_bytes`` in
        all, remain; how many went. Both cut points are found in SQL (a window sum for the
        bytes), so a sweep reads no rows into Python."""
        conn = self.db.connection()
        by_count = conn.execute(
            "SELECT id FROM request_log WHERE model_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (model_id, keep),
        ).fetchone()
        by_bytes = None
        if self.totals(model_id)[1] > keep_bytes:
            by_bytes = conn.execute(
                "SELECT max(id) FROM (SELECT id, sum(size) OVER (ORDER BY id DESC) AS running "
                "FROM request_log WHERE model_id = ?) AS newest WHERE running > ?",
                (model_id, keep_bytes),
            ).fetchone()
        cuts = [int(r[0]) for r in (by_count, by_bytes) if r is not None and r[0] is not None]
        if not cuts:
            return 0
        with self.db.write() as wconn:
            deleted = wconn.execute(
                "DELETE FROM request_log WHERE model_id = ? AND id <= ?", (model_id, max(cuts))
            ).rowcount
        return int(deleted)

    def query(
        self,
        model_id: str,
        *,
        version: int | None = None,
        status: str | None = None,
        kind: str | None = "live",
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[LogRow]:
        """Newest first; ``before`` is the id of the last row of the previous page."""
        where = ["model_id = ?"]
        args: list[object] = [model_id]
        if version is not None:
            where.append("version = ?")
            args.append(version)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if status == "ok":
            where.append("status < 400")
        elif status == "error":
            where.append("status >= 400")
        elif status is not None and status.isdigit():
            where.append("status = ?")
            args.append(int(status))
        elif status is not None:
            where.append("code = ?")
            args.append(status)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        if before is not None:
            where.append("id < ?")
            args.append(before)
        sql = (
            f"SELECT {_COLUMNS} FROM request_log WHERE {' AND '.join(where)} "
            f"ORDER BY id DESC LIMIT {int(limit)}"
        )
        return [_row(r) for r in self.db.connection().execute(sql, args).fetchall()]

    def settings(self) -> dict[str, LogSettings]:
        rows = self.db.connection().execute(
            "SELECT model_id, log_mode, log_keep, log_keep_bytes, traffic FROM model_policies"
        )
        return {
            r[0]: LogSettings(r[1], r[2], r[3], orjson.loads(r[4]) if r[4] else None) for r in rows
        }

    def save_settings(self, model_id: str, settings: LogSettings) -> None:
        traffic = orjson.dumps(settings.traffic).decode() if settings.traffic else None
        args = (settings.mode, settings.keep, settings.keep_bytes, traffic, model_id)
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone() is None:
                raise NotFoundError(f"no model {model_id!r}")
            done = conn.execute(
                "UPDATE model_policies SET log_mode = ?, log_keep = ?, log_keep_bytes = ?, "
                "traffic = ? WHERE model_id = ?",
                args,
            ).rowcount
            if not done:
                conn.execute(
                    "INSERT INTO model_policies (log_mode, log_keep, log_keep_bytes, traffic, "
                    "model_id) VALUES (?, ?, ?, ?, ?)",
                    args,
                )
