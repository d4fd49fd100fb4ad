"""Models, versions and tokens in a database; the files themselves in a ``BlobStore``.

A version row is written in one write transaction after its blobs are in place, so a crash at
any point leaves either the whole version or none of it, and two uploads of one name serialise
on the write lock and get consecutive numbers. Version numbers never repeat: ``last_version``
only grows, so a deleted number is not handed out again.

Several server processes may share one registry (PostgreSQL) and one blob folder. Pins are per
process, so a server cannot see another's upload in flight: blob collection therefore runs under
the write lock, ``create_version`` checks under the same lock that its blobs still exist, and
the sweep at open spares unreferenced blobs younger than ``SHARED_GRACE_S``, which may belong to
an upload another server has not committed yet.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import orjson

from easytensor_jupyter.bundle import Manifest
from easytensor_jupyter.inference.store.blobs import BlobStore
from easytensor_jupyter.inference.store.database import (
    Connection,
    open_database,
)
from easytensor_jupyter.inference.store.migrations import migrate
from easytensor_jupyter.inference.store.postgres import PostgresDatabase
from easytensor_jupyter.inference.store.records import (
    ConflictError,
    CreateResult,
    ModelRecord,
    NotFoundError,
    TokenRecord,
    VersionRecord,
    content_key,
    now_iso,
    slug,
)
from easytensor_jupyter.inference.store.request_log import RequestLogTable
from easytensor_jupyter.inference.store.sqlite import SqliteDatabase

__all__ = ["SHARED_GRACE_S", "Store"]

SHARED_GRACE_S = 3600.0
_CHUNK = 500
_MODEL_COLUMNS = "id, name, default_version, created_at, scaling"


class Store:
    """The server's persistent state; safe to use from the event loop and worker threads."""

    def __init__(self, root: Path, db_url: str | None = None) -> None:
        self.root = root
        self.blobs = BlobStore(root)
        self.db = open_database(root, db_url)
        self.db_path = self.db.path if isinstance(self.db, SqliteDatabase) else None
        self.shared = isinstance(self.db, PostgresDatabase)
        self._manifests: dict[tuple[str, int], Manifest] = {}
        self.requests = RequestLogTable(self.db)

    def describe(self) -> str:
        """Where the registry and the blobs are, for logs: never a password."""
        return f"{self.db.describe()}, blobs in {self.blobs.blob_dir}"

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs.prepare()
        self.db.prepare()
        migrate(self.db)
        if self.shared:
            self.collect(self._settled_blobs(SHARED_GRACE_S))
        else:
            self.collect(self.blobs.all_hashes())

    def _settled_blobs(self, grace_s: float) -> set[str]:
        """Blobs untouched for ``grace_s``: older than any upload still in flight elsewhere."""
        cutoff = time.time() - grace_s
        settled = set()
        for sha in self.blobs.all_hashes():
            with contextlib.suppress(OSError):
                if self.blobs.path(sha).stat().st_mtime < cutoff:
                    settled.add(sha)
        return settled

    def _conn(self) -> Connection:
        return self.db.connection()

    def _manifest(self, model_id: str, version: int, raw: str) -> Manifest:
        key = (model_id, version)
        cached = self._manifests.get(key)
        if cached is None:
            cached = self._manifests[key] = Manifest.model_validate_json(raw)
        return cached

    def _versions(self, conn: Connection, model_id: str) -> list[VersionRecord]:
        rows = conn.execute(
            "SELECT version, created_at, manifest, size_bytes FROM versions "
            "WHERE model_id = ? ORDER BY version",
            (model_id,),
        ).fetchall()
        return [
            VersionRecord(model_id, v, created, self._manifest(model_id, v, raw), size)
            for v, created, raw, size in rows
        ]

    def _latest_key(self, conn: Connection, name: str) -> tuple[str, int, str] | None:
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

    def create_version(
        self, manifest: Manifest, force: bool = False, candidate: bool = False
    ) -> CreateResult:
        """Add version N+1 of ``manifest.name`` (creating the model) and make it the default,
        unless it is a ``candidate``: then the default stays where it was."""
        key = content_key(manifest)
        raw = manifest.model_dump_json()
        size = sum(e.size for e in manifest.files.values())
        created = now_iso()
        with self.db.write() as conn:
            latest = self._latest_key(conn, manifest.name)
            if latest and latest[2] == key and not force:
                return CreateResult(latest[0], manifest.name, latest[1], unchanged=True)
            self._require_blobs(manifest)
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
                if candidate:
                    conn.execute(
                        "UPDATE models SET last_version = ? WHERE id = ?", (version, model_id)
                    )
                else:
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

    def _require_blobs(self, manifest: Manifest) -> None:
        """Under the write lock, so no collection can run between this check and the commit."""
        gone = sorted(n for n, e in manifest.files.items() if not self.blobs.has(e.sha256))
        if gone:
            raise ConflictError(
                f"the files {', '.join(gone)} of {manifest.name!r} were removed from the store "
                "while the upload was in progress (another server deleted the last model that "
                "used them); upload again"
            )

    @staticmethod
    def _new_model_id(conn: Connection, name: str) -> str:
        while True:
            candidate = f"{slug(name)}-{secrets.token_hex(3)}"
            if conn.execute("SELECT 1 FROM models WHERE id = ?", (candidate,)).fetchone() is None:
                return candidate

    def _model(self, conn: Connection, row: tuple[Any, ...]) -> ModelRecord:
        model_id, name, default, created, scaling = row
        versions = self._versions(conn, model_id)
        parsed = orjson.loads(scaling) if scaling is not None else None
        return ModelRecord(model_id, name, default, created, versions, parsed)

    def list_models(self) -> list[ModelRecord]:
        conn = self._conn()
        rows = conn.execute(
            f"SELECT {_MODEL_COLUMNS} FROM models ORDER BY created_at, id"
        ).fetchall()
        return [self._model(conn, r) for r in rows]

    def get_model(self, model_id: str) -> ModelRecord:
        conn = self._conn()
        row = conn.execute(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE id = ?", (model_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no model {model_id!r}")
        return self._model(conn, row)

    def resolve_version(self, model_id: str, version: int | None) -> VersionRecord:
        """The asked-for version, or the default one; the hot path of every prediction, so
        kept per connection until the database's change marker moves."""
        record: VersionRecord = self.db.cached_read(
            ("version", model_id, version), lambda conn: self._read_version(conn, model_id, version)
        )
        return record

    def _read_version(self, conn: Connection, model_id: str, version: int | None) -> VersionRecord:
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
        with self.db.write() as conn:
            self._require_version(conn, model_id, version)
            conn.execute("UPDATE models SET default_version = ? WHERE id = ?", (version, model_id))

    def set_scaling(self, model_id: str, scaling: dict[str, Any] | None) -> None:
        """Keep the model's scaling settings (a JSON object), or clear them with None."""
        if scaling is not None and not isinstance(scaling, dict):
            raise ValueError(
                f"scaling for {model_id!r} must be a JSON object (a dict) or None, "
                f"not {type(scaling).__name__}"
            )
        try:
            raw = None if scaling is None else orjson.dumps(scaling, option=orjson.OPT_SORT_KEYS)
        except TypeError as exc:
            raise ValueError(f"scaling for {model_id!r} is not JSON: {exc}") from exc
        text = None if raw is None else raw.decode()
        with self.db.write() as conn:
            if not conn.execute(
                "UPDATE models SET scaling = ? WHERE id = ?", (text, model_id)
            ).rowcount:
                raise NotFoundError(f"no model {model_id!r}")

    @staticmethod
    def _require_version(conn: Connection, model_id: str, version: int) -> int:
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

    @staticmethod
    def _hashes_of(conn: Connection, model_id: str, version: int | None) -> set[str]:
        sql = "SELECT sha256 FROM version_files WHERE model_id = ?"
        args: tuple[object, ...] = (model_id,)
        if version is not None:
            sql += " AND version = ?"
            args = (model_id, version)
        return {r[0] for r in conn.execute(sql, args)}

    def delete_model(self, model_id: str) -> None:
        with self.db.write() as conn:
            hashes = self._hashes_of(conn, model_id, None)
            if conn.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount == 0:
                raise NotFoundError(f"no model {model_id!r}")
        self._manifests = {k: v for k, v in self._manifests.items() if k[0] != model_id}
        self.collect(hashes)

    def delete_version(self, model_id: str, version: int) -> Literal["version", "model"]:
        """Delete one version; the last one takes its model along, the default one is refused."""
        with self.db.write() as conn:
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
        return self._referenced(self._conn())(hashes)

    @staticmethod
    def _referenced(conn: Connection) -> Callable[[set[str]], set[str]]:
        def referenced(hashes: set[str]) -> set[str]:
            found: set[str] = set()
            items = sorted(hashes)
            for start in range(0, len(items), _CHUNK):
                chunk = items[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT DISTINCT sha256 FROM version_files WHERE sha256 IN ({marks})"
                found.update(r[0] for r in conn.execute(sql, chunk))
            return found

        return referenced

    def collect(self, candidates: Iterable[str]) -> list[str]:
        """Remove candidates no version uses; under the write lock, so that another server
        cannot commit a version using one of them between our check and the unlink."""
        wanted = set(candidates)
        if not wanted:
            return []
        with self.db.write() as conn:
            return self.blobs.collect(wanted, self._referenced(conn))

    def missing(self, hashes: Iterable[str]) -> list[str]:
        return [h for h in dict.fromkeys(hashes) if not self.blobs.has(h)]

    def add_token(self, model_id: str, token_hash: str, label: str | None = None) -> TokenRecord:
        token_id = "tok_" + secrets.token_hex(6)
        created = now_iso()
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone() is None:
                raise NotFoundError(f"no model {model_id!r}")
            conn.execute(
                "INSERT INTO tokens (id, model_id, token_hash, created_at, label) "
                "VALUES (?, ?, ?, ?, ?)",
                (token_id, model_id, token_hash, created, label),
            )
        return TokenRecord(token_id, model_id, created, False, None, label)

    def list_tokens(self, model_id: str) -> list[TokenRecord]:
        self.get_model(model_id)
        rows = self._conn().execute(
            "SELECT id, model_id, created_at, revoked_at, last_used_at, label FROM tokens "
            "WHERE model_id = ? ORDER BY created_at, id",
            (model_id,),
        )
        return [TokenRecord(r[0], r[1], r[2], r[3] is not None, r[4], r[5]) for r in rows]

    def revoke_token(self, model_id: str, token_id: str) -> None:
        with self.db.write() as conn:
            done = conn.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) "
                "WHERE id = ? AND model_id = ?",
                (now_iso(), token_id, model_id),
            ).rowcount
        if not done:
            raise NotFoundError(f"model {model_id!r} has no token {token_id!r}")

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        """Every query's credential check, so kept like :meth:`resolve_version`."""
        record: TokenRecord | None = self.db.cached_read(
            ("token", token_hash), lambda conn: self._read_token(conn, token_hash)
        )
        return record

    def _read_token(self, conn: Connection, token_hash: str) -> TokenRecord | None:
        row = conn.execute(
            "SELECT id, model_id, created_at, revoked_at, last_used_at, label FROM tokens "
            "WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        return TokenRecord(row[0], row[1], row[2], row[3] is not None, row[4], row[5])

    def touch_tokens(self, used: dict[str, str]) -> None:
        if not used:
            return
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE tokens SET last_used_at = ? WHERE id = ?",
                [(when, token_id) for token_id, when in used.items()],
            )

    def close(self) -> None:
        self.db.close()
