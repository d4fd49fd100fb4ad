"""The registry's schema, as an ordered list of migrations the server applies when it opens.

Every open runs the missing migrations in one write transaction, so two servers starting on one
PostgreSQL database take turns (the second finds the work done) and a crash halfway leaves the
schema as it was. ``schema_version`` keeps one row per applied migration. A store made before
migrations existed has the tables but no ``schema_version``: it is taken as version 1 and carried
on from there. A database that a newer easytensor has migrated further is refused, since this
code would not know what its extra columns mean.

Statements are plain SQL that SQLite and PostgreSQL both accept. Sizes are BIGINT: PostgreSQL's
INTEGER is 32-bit and model files pass 2 GiB (SQLite stores any integer in 64 bits anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

from easytensor_jupyter.inference.store.database import Connection, Database, RegistryError
from easytensor_jupyter.inference.store.records import now_iso

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "SchemaTooNew", "migrate", "schema_version"]


class SchemaTooNew(RegistryError):
    """The database was migrated by a newer easytensor than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "models, versions, their files and query tokens",
        (
            "CREATE TABLE IF NOT EXISTS models ("
            " id TEXT PRIMARY KEY,"
            " name TEXT NOT NULL UNIQUE,"
            " default_version INTEGER NOT NULL,"
            " last_version INTEGER NOT NULL,"
            " created_at TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS versions ("
            " model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,"
            " version INTEGER NOT NULL,"
            " created_at TEXT NOT NULL,"
            " manifest TEXT NOT NULL,"
            " content_key TEXT NOT NULL,"
            " size_bytes BIGINT NOT NULL,"
            " PRIMARY KEY (model_id, version))",
            "CREATE TABLE IF NOT EXISTS version_files ("
            " model_id TEXT NOT NULL,"
            " version INTEGER NOT NULL,"
            " name TEXT NOT NULL,"
            " sha256 TEXT NOT NULL,"
            " size BIGINT NOT NULL,"
            " PRIMARY KEY (model_id, version, name),"
            " FOREIGN KEY (model_id, version) REFERENCES versions(model_id, version)"
            " ON DELETE CASCADE)",
            "CREATE INDEX IF NOT EXISTS version_files_sha ON version_files(sha256)",
            "CREATE TABLE IF NOT EXISTS tokens ("
            " id TEXT PRIMARY KEY,"
            " model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,"
            " token_hash TEXT NOT NULL UNIQUE,"
            " created_at TEXT NOT NULL,"
            " revoked_at TEXT,"
            " last_used_at TEXT)",
        ),
    ),
    Migration(
        2,
        "models.scaling: a JSON object of scaling settings, or NULL",
        ("ALTER TABLE models ADD COLUMN scaling TEXT",),
    ),
    Migration(
        3,
        "tokens.label: where a query token was made (a notebook cell, the CLI, the lab panel)",
        ("ALTER TABLE tokens ADD COLUMN label TEXT",),
    ),
    Migration(
        4,
        "request_log and model_policies: each model's logged requests, log setting and traffic",
        (
            "CREATE TABLE IF NOT EXISTS model_policies ("
            " model_id TEXT PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,"
            " log_mode TEXT,"
            " log_keep BIGINT,"
            " log_keep_bytes BIGINT,"
            " traffic TEXT)",
            "CREATE TABLE IF NOT EXISTS request_log ("
            " id BIGINT PRIMARY KEY,"
            " model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,"
            " ts DOUBLE PRECISION NOT NULL,"
            " version INTEGER NOT NULL,"
            " kind TEXT NOT NULL,"
            " status INTEGER NOT NULL,"
            " code TEXT NOT NULL,"
            " latency_ms DOUBLE PRECISION NOT NULL,"
            " token_label TEXT,"
            " input TEXT,"
            " input_blob BYTEA,"
            " input_note TEXT,"
            " output TEXT,"
            " agrees INTEGER,"
            " size BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS request_log_model ON request_log(model_id, id)",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " applied_at TEXT NOT NULL,"
    " summary TEXT NOT NULL)"
)
_LEGACY_TABLES = ("models", "versions", "version_files", "tokens")


def schema_version(db: Database, conn: Connection) -> int:
    """The version the database is at: 0 when empty, 1 for a store from before migrations."""
    if db.table_exists(conn, "schema_version"):
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
    if all(db.table_exists(conn, table) for table in _LEGACY_TABLES):
        return 1
    return 0


def migrate(db: Database) -> list[int]:
    """Bring the schema up to ``LATEST_VERSION``; the versions applied (or adopted), in order."""
    done: list[int] = []
    with db.write() as conn:
        current = schema_version(db, conn)
        if current > LATEST_VERSION:
            raise SchemaTooNew(
                f"the registry at {db.describe()} is at schema version {current}, but this "
                f"easytensor knows versions up to {LATEST_VERSION} only: upgrade "
                "easytensor-jupyter on this machine, or use another registry"
            )
        conn.execute(_VERSION_TABLE)
        recorded = {r[0] for r in conn.execute("SELECT version FROM schema_version")}
        for migration in MIGRATIONS:
            if migration.version in recorded:
                continue
            if migration.version > current:
                for statement in migration.statements:
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at, summary) VALUES (?, ?, ?)",
                (migration.version, now_iso(), migration.summary),
            )
            done.append(migration.version)
    return done
