"""The registry in one SQLite file in the store folder, in WAL mode."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

from easytensor_jupyter.inference.store.blobs import StoreFull
from easytensor_jupyter.inference.store.database import (
    Connection,
    Cursor,
    Database,
    RegistryUnavailable,
    one_line,
)
from easytensor_jupyter.inference.store.records import ConflictError

__all__ = ["SqliteDatabase"]

_BUSY_ATTEMPTS = 50
# How stale a hot-path read may be after another process's commit; a client's next request
# takes longer than this to arrive.
_OUTSIDE_CHECK_S = 0.001
_BUSY = "the store is busy (another writer holds it); try again"


class _SqliteConnection(Connection):
    def __init__(self, raw: sqlite3.Connection) -> None:
        super().__init__()
        self.raw = raw
        self.closed = False
        # When data_version was last read, and its value (see SqliteDatabase.change_marker).
        self.outside_seen: tuple[float, int] | None = None

    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor:
        try:
            return self.raw.execute(sql, args)
        except sqlite3.Error as exc:
            mapped = _sqlite_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.Error as exc:
            mapped = _sqlite_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    @property
    def usable(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True
        self.raw.close()


def _is_busy(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def _sqlite_error(exc: sqlite3.Error) -> Exception | None:
    """What a caller can act on, or None to let the driver's error through."""
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return StoreFull(f"SQLite: {exc}")
    if _is_busy(exc):
        return ConflictError(_BUSY)
    return None


class SqliteDatabase(Database):
    """One file in the store folder, in WAL mode so readers never wait for the writer."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def describe(self) -> str:
        return f"SQLite at {self.path}"

    def _connect(self) -> Connection:
        try:
            raw = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            raw.execute("PRAGMA busy_timeout=10000")
            raw.execute("PRAGMA foreign_keys=ON")
            raw.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise RegistryUnavailable(
                f"cannot open the registry at {self.path}: {one_line(exc)}; "
                "check that the store folder exists and is writable"
            ) from exc
        return _SqliteConnection(raw)

    def change_marker(self, conn: Connection) -> Hashable | None:
        """This process's commits, counted exactly, and the file's data_version, which moves
        on other processes' commits and is read at most once per ``_OUTSIDE_CHECK_S``."""
        assert isinstance(conn, _SqliteConnection)
        now = time.monotonic()
        seen = conn.outside_seen
        if seen is None or now - seen[0] > _OUTSIDE_CHECK_S:
            seen = conn.outside_seen = (now, conn.execute("PRAGMA data_version").fetchone()[0])
        return (self.commits, seen[1])

    def prepare(self) -> None:
        self.connection().execute("PRAGMA journal_mode=WAL")

    def _begin(self, conn: Connection) -> None:
        assert isinstance(conn, _SqliteConnection)
        for attempt in range(_BUSY_ATTEMPTS):
            try:
                conn.raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    mapped = _sqlite_error(exc)
                    if mapped is None:
                        raise
                    raise mapped from exc
                time.sleep(min(0.01 * (attempt + 1), 0.2))
        raise ConflictError(_BUSY)

    def table_exists(self, conn: Connection, name: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None
