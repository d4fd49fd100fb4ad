"""Models, versions and tokens in SQLite; the files themselves in a ``BlobStore``.

A version row is written in one ``BEGIN IMMEDIATE`` transaction after its blobs are in place,
so a crash at any point leaves either the whole version or none of it, and two uploads of one
name serialise on the write lock and get consecutive numbers. Version numbers never repeat:
``last_version`` only grows, so a deleted number is not handed out again.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import orjson

from easytensor_jupyter.bundle import Manifest
from easytensor_jupyter.inference.blobs import BlobStore, StoreFull

__all__ = [
    "ConflictError",
    "CreateResult",
    "ModelRecord",
    "NotFoundError",
    "Store",
    "TokenRecord",
    "VersionRecord",
    "content_key",
    "now_iso",
]

DB_NAME = "easytensor.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    default_version INTEGER NOT NULL,
    last_version INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    manifest TEXT NOT NULL,
    content_key TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE TABLE IF NOT EXISTS version_files (
    model_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (model_id, version, name),
    FOREIGN KEY (model_id, version) REFERENCES versions(model_id, version) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS version_files_sha ON version_files(sha256);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    last_used_at TEXT
);
"""


class NotFoundError(LookupError):
    pass


class ConflictError(RuntimeError):
    pass


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def content_key(manifest: Manifest) -> str:
    """What makes two uploads the same model: files, class, constructor arguments, batching."""
    key = {
        "files": {name: entry.sha256 for name, entry in sorted(manifest.files.items())},
        "class_name": manifest.class_name,
        "init_args": manifest.init_args,
        "init_kwargs": manifest.init_kwargs,
        "batching": manifest.batching.model_dump() if manifest.batching else None,
    }
    return hashlib.sha256(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return slug or "model"


@dataclass(frozen=True)
class VersionRecord:
    model_id: str
    version: int
    created_at: str
    manifest: Manifest
    size_bytes: int


@dataclass(frozen=True)
class ModelRecord:
    id: str
    name: str
    default_version: int
    created_at: str
    versions: list[VersionRecord]

    def version(self, number: int) -> VersionRecord | None:
        return next((v for v in self.versions if v.version == number), None)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk: a blob shared by several versions counts once."""
        sizes = {e.sha256: e.size for v in self.versions for e in v.manifest.files.values()}
        return sum(sizes.values())


@dataclass(frozen=True)
class TokenRecord:
    id: str
    model_id: str
    created_at: str
    revoked: bool
    last_used_at: str | None


@dataclass(frozen=True)
class CreateResult:
    model_id: str
    name: str
    version: int
    unchanged: bool


class Store:
    """The server's persistent state; safe to use from the event loop and worker threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root)
        self.db_path = root / DB_NAME
        self._local = threading.local()
        self._manifests: dict[tuple[str, int], Manifest] = {}

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs.prepare()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        self.collect(self.blobs.all_hashes())

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        for attempt in range(50):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(min(0.01 * (attempt + 1), 0.2))
        else:
            raise ConflictError("the store is busy; try again")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise StoreFull(f"SQLite: {exc}") from exc
            raise

    def _manifest(self, model_id: str, version: int, raw: str) -> Manifest:
        key = (model_id, version)
        cached = self._manifests.get(key)
        if cached is None:
            cached = self._manifests[key] = Manifest.model_validate_json(raw)
        return cached

    def _versions(self, conn: sqlite3.Connection, model_id: str) -> list[VersionRecord]:
        rows = conn.execute(
            "SELECT version, created_at, manifest, size_bytes FROM versions "
            "WHERE model_id = ? ORDER BY version",
            (model_id,),
        ).fetchall()
        return [
            VersionRecord(model_id, v, created, self._manifest(model_id, v, raw), size)
            for v, created, raw, size in rows
        ]

    def _latest_key(self, conn: sqlite3.Connection, name: str) -> tuple[str, int, str] | None:
        row = conn.execute(
            "SELECT m.id, v.version, v.content_key FROM models m JOIN versions v "
            "ON v.model_id = m.id WHERE m.name = ? ORDER BY v.version DESC LIMIT 1",
            (name,),
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def find_unchanged(self, manifest: Manifest) -> CreateResult | None:
        """The latest version of ``manifest.name`` if it has the same content, else None."""
        latest = self._latest_key(self._conn(), manifest.name)
        if latest and latest[2] == content_key(manifest):
            return CreateResult(latest[0], manifest.name, latest[1], unchanged=True)
        return None

    def create_version(self, manifest: Manifest, force: bool = False) -> CreateResult:
        """Add version N+1 of ``manifest.name`` (creating the model) and make it the default."""
        key = content_key(manifest)
        raw = manifest.model_dump_json()
        size = sum(e.size for e in manifest.files.values())
        created = now_iso()
        with self._write() as conn:
            latest = self._latest_key(conn, manifest.name)
            if latest and latest[2] == key and not force:
                return CreateResult(latest[0], manifest.name, latest[1], unchanged=True)
            row = conn.execute(
                "SELECT id, last_version FROM models WHERE name = ?", (manifest.name,)
            ).fetchone()
            if row is None:
                model_id = self._new_model_id(conn, manifest.name)
                version = 1
                conn.execute(
                    "INSERT INTO models (id, name, default_version, last_version, created_at) "
                    "VALUES (?, ?, 1, 1, ?)",
                    (model_id, manifest.name, created),
                )
            else:
                model_id, version = row[0], row[1] + 1
                conn.execute(
                    "UPDATE models SET default_version = ?, last_version = ? WHERE id = ?",
                    (version, version, model_id),
                )
            conn.execute(
                "INSERT INTO versions (model_id, version, created_at, manifest, content_key, "
                "size_bytes) VALUES (?, ?, ?, ?, ?, ?)",
                (model_id, version, created, raw, key, size),
            )
            conn.executemany(
                "INSERT INTO version_files (model_id, version, name, sha256, size) "
                "VALUES (?, ?, ?, ?, ?)",
                [(model_id, version, n, e.sha256, e.size) for n, e in manifest.files.items()],
            )
        return CreateResult(model_id, manifest.name, version, unchanged=False)

    @staticmethod
    def _new_model_id(conn: sqlite3.Connection, name: str) -> str:
        while True:
            candidate = f"{_slug(name)}-{secrets.token_hex(3)}"
            if conn.execute("SELECT 1 FROM models WHERE id = ?", (candidate,)).fetchone() is None:
                return candidate

    def _model(self, conn: sqlite3.Connection, row: tuple[str, str, int, str]) -> ModelRecord:
        model_id, name, default, created = row
        return ModelRecord(model_id, name, default, created, self._versions(conn, model_id))

    def list_models(self) -> list[ModelRecord]:
        conn = self._conn()
        rows = conn.execute(
            "SELECT id, name, default_version, created_at FROM models ORDER BY created_at, id"
        ).fetchall()
        return [self._model(conn, r) for r in rows]

    def get_model(self, model_id: str) -> ModelRecord:
        conn = self._conn()
        row = conn.execute(
            "SELECT id, name, default_version, created_at FROM models WHERE id = ?", (model_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no model {model_id!r}")
        return self._model(conn, row)

    def resolve_version(self, model_id: str, version: int | None) -> VersionRecord:
        """The asked-for version, or the default one; the hot path of every prediction."""
        conn = self._conn()
        if version is None:
            row = conn.execute(
                "SELECT default_version FROM models WHERE id = ?", (model_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no model {model_id!r}")
            version = int(row[0])
        cached = self._manifests.get((model_id, version))
        row = conn.execute(
            "SELECT created_at, size_bytes, manifest FROM versions "
            "WHERE model_id = ? AND version = ?",
            (model_id, version),
        ).fetchone()
        if row is None:
            if conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone() is None:
                raise NotFoundError(f"no model {model_id!r}")
            raise NotFoundError(f"model {model_id!r} has no version {version}")
        manifest = cached or self._manifest(model_id, version, row[2])
        return VersionRecord(model_id, version, row[0], manifest, row[1])

    def count_models(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM models").fetchone()[0])

    def set_default(self, model_id: str, version: int) -> None:
        with self._write() as conn:
            self._require_version(conn, model_id, version)
            conn.execute("UPDATE models SET default_version = ? WHERE id = ?", (version, model_id))

    @staticmethod
    def _require_version(conn: sqlite3.Connection, model_id: str, version: int) -> int:
        row = conn.execute(
            "SELECT default_version FROM models WHERE id = ?", (model_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no model {model_id!r}")
        found = conn.execute(
            "SELECT 1 FROM versions WHERE model_id = ? AND version = ?", (model_id, version)
        ).fetchone()
        if found is None:
            raise NotFoundError(f"model {model_id!r} has no version {version}")
        return int(row[0])

    def _hashes_of(self, conn: sqlite3.Connection, model_id: str, version: int | None) -> set[str]:
        sql = "SELECT sha256 FROM version_files WHERE model_id = ?"
        args: tuple[object, ...] = (model_id,)
        if version is not None:
            sql += " AND version = ?"
            args = (model_id, version)
        return {r[0] for r in conn.execute(sql, args)}

    def delete_model(self, model_id: str) -> None:
        with self._write() as conn:
            hashes = self._hashes_of(conn, model_id, None)
            if conn.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount == 0:
                raise NotFoundError(f"no model {model_id!r}")
        self._manifests = {k: v for k, v in self._manifests.items() if k[0] != model_id}
        self.collect(hashes)

    def delete_version(self, model_id: str, version: int) -> Literal["version", "model"]:
        """Delete one version; the last one takes its model along, the default one is refused."""
        with self._write() as conn:
            default = self._require_version(conn, model_id, version)
            count = conn.execute(
                "SELECT count(*) FROM versions WHERE model_id = ?", (model_id,)
            ).fetchone()[0]
            hashes = self._hashes_of(conn, model_id, version)
            if count == 1:
                conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
                what: Literal["version", "model"] = "model"
            elif version == default:
                raise ConflictError(
                    f"version {version} is the default; make another version the default first"
                )
            else:
                conn.execute(
                    "DELETE FROM versions WHERE model_id = ? AND version = ?", (model_id, version)
                )
                what = "version"
        self._manifests.pop((model_id, version), None)
        self.collect(hashes)
        return what

    def referenced(self, hashes: set[str]) -> set[str]:
        conn = self._conn()
        found: set[str] = set()
        items = sorted(hashes)
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT DISTINCT sha256 FROM version_files WHERE sha256 IN ({marks})"
            found.update(r[0] for r in conn.execute(sql, chunk))
        return found

    def collect(self, candidates: Iterable[str]) -> list[str]:
        return self.blobs.collect(candidates, self.referenced)

    def missing(self, hashes: Iterable[str]) -> list[str]:
        return [h for h in dict.fromkeys(hashes) if not self.blobs.has(h)]

    def add_token(self, model_id: str, token_hash: str) -> TokenRecord:
        token_id = "tok_" + secrets.token_hex(6)
        created = now_iso()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone() is None:
                raise NotFoundError(f"no model {model_id!r}")
            conn.execute(
                "INSERT INTO tokens (id, model_id, token_hash, created_at) VALUES (?, ?, ?, ?)",
                (token_id, model_id, token_hash, created),
            )
        return TokenRecord(token_id, model_id, created, False, None)

    def list_tokens(self, model_id: str) -> list[TokenRecord]:
        self.get_model(model_id)
        rows = self._conn().execute(
            "SELECT id, model_id, created_at, revoked_at, last_used_at FROM tokens "
            "WHERE model_id = ? ORDER BY created_at, id",
            (model_id,),
        )
        return [TokenRecord(r[0], r[1], r[2], r[3] is not None, r[4]) for r in rows]

    def revoke_token(self, model_id: str, token_id: str) -> None:
        with self._write() as conn:
            done = conn.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) "
                "WHERE id = ? AND model_id = ?",
                (now_iso(), token_id, model_id),
            ).rowcount
        if not done:
            raise NotFoundError(f"model {model_id!r} has no token {token_id!r}")

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        row = (
            self._conn()
            .execute(
                "SELECT id, model_id, created_at, revoked_at, last_used_at FROM tokens "
                "WHERE token_hash = ?",
                (token_hash,),
            )
            .fetchone()
        )
        return TokenRecord(row[0], row[1], row[2], row[3] is not None, row[4]) if row else None

    def touch_tokens(self, used: dict[str, str]) -> None:
        if not used:
            return
        with self._write() as conn:
            conn.executemany(
                "UPDATE tokens SET last_used_at = ? WHERE id = ?",
                [(when, token_id) for token_id, when in used.items()],
            )

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
