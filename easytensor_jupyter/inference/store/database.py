"""Where the registry's rows live: SQLite in the store folder, or a shared PostgreSQL.

The Store writes its SQL once, with ``?`` placeholders and nothing dialect-specific; this module
hides the rest. Each thread gets its own connection, in autocommit, so a read never waits on a
transaction another thread left open, and writes take one explicit transaction that serialises
with every other writer: SQLite's ``BEGIN IMMEDIATE`` does that by itself, and on PostgreSQL a
transaction-scoped advisory lock gives several server processes the same single-writer order, so
two uploads of one name get consecutive version numbers whichever server receives them.

Driver errors that a caller can act on become this package's errors: a full disk is
``StoreFull``, a busy database is ``ConflictError`` (try again), a lost or refused connection is
``RegistryUnavailable`` (with where the registry is, never its password).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from easytensor_jupyter.inference.blobs import StoreFull
from easytensor_jupyter.inference.store.records import ConflictError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DB_NAME",
    "Connection",
    "Cursor",
    "Database",
    "PostgresDatabase",
    "RegistryError",
    "RegistryUnavailable",
    "SqliteDatabase",
    "open_database",
    "redact_url",
    "to_pyformat",
]

DB_NAME = "easytensor.sqlite3"
POSTGRES_SCHEMES = ("postgresql", "postgres")
# Any constant works as long as every server uses the same one; this one spells "easytens".
WRITE_LOCK_KEY = 0x6561737974656E73
_LOCK_TIMEOUT = "60s"
_CONNECT_TIMEOUT_S = 10
_BUSY_ATTEMPTS = 50
_BUSY = "the store is busy (another writer holds it); try again"


class RegistryError(RuntimeError):
    """The registry cannot be used as configured: the message says what to change."""


class RegistryUnavailable(RegistryError):
    """The registry's database could not be reached, or the connection to it was lost."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(ABC):
    """One thread's connection; statements use ``?`` placeholders whatever the database."""

    @abstractmethod
    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    @property
    @abstractmethod
    def usable(self) -> bool:
        """False once the connection is closed or broken, so the next call opens a new one."""

    @abstractmethod
    def close(self) -> None: ...

    def __del__(self) -> None:
        # A thread that ends drops its connection: close it quietly rather than leak a backend.
        with contextlib.suppress(Exception):
            self.close()


def one_line(exc: BaseException) -> str:
    """Driver messages span lines (libpq adds hints); logs and CLI errors want one."""
    return " ".join(str(exc).split()) or type(exc).__name__


def redact_url(url: str) -> str:
    """The URL without its password (in the user part or as a query parameter)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if "password" not in k.lower()]
    query = parts.query if len(kept) == len(pairs) else urlencode(kept)
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc + parts.path
    return shown + (f"?{query}" if query else "")


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s``; a literal ``%`` doubled so psycopg keeps it."""
    out: list[str] = []
    quote = ""
    for char in sql:
        if char == "%":
            out.append("%%")
        elif quote:
            out.append(char)
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


class Database(ABC):
    """Per-thread connections and the write transaction; subclasses know their driver."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._generation = 0

    @abstractmethod
    def describe(self) -> str:
        """Where the rows are, safe for logs."""

    @abstractmethod
    def _connect(self) -> Connection: ...

    @abstractmethod
    def _begin(self, conn: Connection) -> None:
        """Start a transaction that excludes every other writer until it ends."""

    @abstractmethod
    def table_exists(self, conn: Connection, name: str) -> bool: ...

    def prepare(self) -> None:
        """Once at open, outside any transaction: check the database can be reached."""
        self.connection()

    def connection(self) -> Connection:
        held: tuple[int, Connection] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == self._generation and held[1].usable:
            return held[1]
        conn = self._connect()
        with self._lock:
            self._opened.add(conn)
            self._local.held = (self._generation, conn)
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        conn = self.connection()
        self._begin(conn)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every connection this object opened; a later call opens fresh ones."""
        with self._lock:
            opened, self._opened = list(self._opened), weakref.WeakSet()
            self._generation += 1
        for conn in opened:
            with contextlib.suppress(Exception):
                conn.close()


class _SqliteConnection(Connection):
    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self.closed = False

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


def open_database(root: Path, db_url: str | None) -> Database:
    """``None`` keeps the registry in SQLite beside the blobs; a PostgreSQL URL shares it."""
    if db_url is None:
        return SqliteDatabase(root / DB_NAME)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", db_url)
    if scheme and scheme.group(1).lower() in POSTGRES_SCHEMES:
        return PostgresDatabase(db_url)
    raise ValueError(
        f"unsupported registry URL {redact_url(db_url)!r}: give a PostgreSQL URL such as "
        "postgresql://user[:password]@host[:port]/database (postgres:// works too), "
        "or no URL to keep the registry in SQLite in the store folder"
    )
