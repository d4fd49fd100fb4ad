"""The server's registry (models, versions, query tokens) and its blob store.

``Store(root)`` keeps the registry in SQLite inside the store folder, as a single server wants;
``Store(root, "postgresql://...")`` keeps it in PostgreSQL so several server processes can share
one registry and one blob folder. Modules: ``records`` (what callers get back), ``database``
(connections and the write lock per backend), ``migrations`` (the schema) and ``registry`` (the
``Store`` itself).
"""

from __future__ import annotations

from easytensor_jupyter.inference.store.database import (
    DB_NAME,
    Database,
    RegistryError,
    RegistryUnavailable,
    open_database,
    redact_url,
)
from easytensor_jupyter.inference.store.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    SchemaTooNew,
    migrate,
    schema_version,
)
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
)
from easytensor_jupyter.inference.store.registry import SHARED_GRACE_S, Store
from easytensor_jupyter.inference.store.sqlite import SqliteDatabase

__all__ = [
    "DB_NAME",
    "LATEST_VERSION",
    "MIGRATIONS",
    "SHARED_GRACE_S",
    "ConflictError",
    "CreateResult",
    "Database",
    "Migration",
    "ModelRecord",
    "NotFoundError",
    "PostgresDatabase",
    "RegistryError",
    "RegistryUnavailable",
    "SchemaTooNew",
    "SqliteDatabase",
    "Store",
    "TokenRecord",
    "VersionRecord",
    "content_key",
    "migrate",
    "now_iso",
    "open_database",
    "redact_url",
    "schema_version",
]
