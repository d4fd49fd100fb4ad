"""The registry in a shared PostgreSQL: an advisory lock orders writers across servers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from easytensor_jupyter.inference.store.blobs import StoreFull
from easytensor_jupyter.inference.store.database import (
    Connection,
    Cursor,
    Database,
    RegistryError,
    RegistryUnavailable,
    one_line,
    redact_url,
    to_pyformat,
)
from easytensor_jupyter.inference.store.records import ConflictError

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresDatabase"]

# Any constant works as long as every server uses the same one; this one spells "easytens".
WRITE_LOCK_KEY = 0x6561737974656E73
_LOCK_TIMEOUT = "60s"
_CONNECT_TIMEOUT_S = 10


def _require_psycopg() -> None:
    """psycopg is an optional dependency: say how to get it rather than fail on an import."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise RegistryError(
            "a postgresql:// registry needs psycopg 3, which is not installed: "
            "pip install 'easytensor-jupyter[postgres]'"
        ) from exc


class _PostgresConnection(Connection):
    def __init__(self, raw: psycopg.Connection[Any], where: str) -> None:
        super().__init__()
        self.raw = raw
        self.where = where

    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor:
        # Always pass a tuple: with params psycopg unescapes the doubled %.
        try:
            return self.raw.execute(to_pyformat(sql), tuple(args))
        except Exception as exc:
            mapped = self._error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            with self.raw.cursor() as cursor:
                cursor.executemany(to_pyformat(sql), [tuple(r) for r in rows])
        except Exception as exc:
            mapped = self._error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    @property
    def usable(self) -> bool:
        return not (self.raw.closed or self.raw.broken)

    def close(self) -> None:
        self.raw.close()

    def _error(self, exc: Exception) -> Exception | None:
        """What a caller can act on, or None to let the driver's error through."""
        import psycopg

        if not isinstance(exc, psycopg.Error):
            return None
        state = exc.sqlstate or ""
        if state == "53100":
            return StoreFull(f"PostgreSQL at {self.where}: {one_line(exc)}")
        if state in ("55P03", "40001", "40P01"):
            return ConflictError(
                f"the registry at {self.where} is busy ({one_line(exc)}); try again"
            )
        lost = state.startswith(("08", "57P")) or (not state and self.raw.broken)
        if lost or isinstance(exc, psycopg.InterfaceError) or self.raw.closed:
            return RegistryUnavailable(
                f"lost the connection to the registry at {self.where}: {one_line(exc)}; "
                "check that PostgreSQL is running and reachable, then try again"
            )
        return None


class PostgresDatabase(Database):
    """A PostgreSQL database that several servers share; the URL is checked, not dialled."""

    def __init__(self, url: str) -> None:
        super().__init__()
        _require_psycopg()
        import psycopg

        self.url = url
        self.shown = redact_url(url)
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ValueError(f"cannot read the registry URL {self.shown}: {one_line(exc)}") from exc
        self._extra: dict[str, Any] = {}
        if "connect_timeout" not in params:
            self._extra["connect_timeout"] = _CONNECT_TIMEOUT_S
        if "application_name" not in params:
            self._extra["application_name"] = "easytensor"

    def describe(self) -> str:
        return f"PostgreSQL at {self.shown}"

    def _connect(self) -> Connection:
        import psycopg

        try:
            raw = psycopg.connect(self.url, autocommit=True, **self._extra)
        except psycopg.Error as exc:
            raise RegistryUnavailable(
                f"cannot connect to the registry at {self.shown}: {one_line(exc)}; "
                "check that PostgreSQL is running there and that the URL is right"
            ) from exc
        conn = _PostgresConnection(raw, self.shown)
        # A writer stuck behind a hung server gives up, as SQLite's busy timeout does.
        conn.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
        return conn

    def _begin(self, conn: Connection) -> None:
        conn.execute("BEGIN")
        try:
            conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            raise

    def table_exists(self, conn: Connection, name: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (name,),
        ).fetchone()
        return row is not None
