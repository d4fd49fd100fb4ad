"""Where the registry's rows live: SQLite in the store folder, or a shared PostgreSQL.

The Store writes its SQL once, with ``?`` placeholders and nothing dialect-specific; this module
hides the rest. Each thread gets its own connection, in autocommit, so a read never waits on a
transaction another thread left open, and writes take one explicit transaction that serialises
with every other writer: SQLite's ``BEGIN IMMEDIATE`` does that by itself, and on PostgreSQL a
transaction-scoped advisory lock gives several server processes the same single-writer order, so
two uploads of one name get consecutive version numbers whichever server receives them.

The dialects live in ``sqlite`` and ``postgres``. Driver errors that a caller can act on become this package's errors: a full disk is
``StoreFull``, a busy database is ``ConflictError`` (try again), a lost or refused connection is
``RegistryUnavailable`` (with where the registry is, never its password).
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "DB_NAME",
    "Connection",
    "Cursor",
    "Database",
    "RegistryError",
    "RegistryUnavailable",
    "open_database",
    "redact_url",
    "to_pyformat",
]

DB_NAME = "easytensor.sqlite3"
POSTGRES_SCHEMES = ("postgresql", "postgres")
_READ_CACHE_MAX = 4096


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

    def __init__(self) -> None:
        # Hot-path reads kept until the database's change marker moves (Store.cached_read).
        self.read_cache: dict[Any, Any] = {}
        self.read_marker: Hashable | None = None

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
        self.commits = 0

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

    def change_marker(self, conn: Connection) -> Hashable | None:
        """A value that moves whenever a writer may have changed the rows, or None when the
        driver cannot tell cheaply (then nothing read is kept)."""
        return None

    def cached_read(self, key: tuple[Any, ...], read: Callable[[Connection], Any]) -> Any:
        """``read(conn)``, kept on this thread's connection until the change marker moves;
        None is not kept, so unknown keys (a stranger's guesses) never fill the cache."""
        conn = self.connection()
        marker = self.change_marker(conn)
        if marker is None:
            return read(conn)
        if conn.read_marker != marker or len(conn.read_cache) > _READ_CACHE_MAX:
            conn.read_cache.clear()
            conn.read_marker = marker
        hit = conn.read_cache.get(key)
        if hit is None:
            hit = read(conn)
            if hit is not None:
                conn.read_cache[key] = hit
        return hit

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
            self.commits += 1
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


def open_database(root: Path, db_url: str | None) -> Database:
    """``None`` keeps the registry in SQLite beside the blobs; a PostgreSQL URL shares it."""
    if db_url is None:
        from easytensor_jupyter.inference.store.sqlite import SqliteDatabase

        return SqliteDatabase(root / DB_NAME)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", db_url)
    if scheme and scheme.group(1).lower() in POSTGRES_SCHEMES:
        from easytensor_jupyter.inference.store.postgres import PostgresDatabase

        return PostgresDatabase(db_url)
    raise ValueError(
        f"unsupported registry URL {redact_url(db_url)!r}: give a PostgreSQL URL such as "
        "postgresql://user[:password]@host[:port]/database (postgres:// works too), "
        "or no URL to keep the registry in SQLite in the store folder"
    )
