"""The schema's migrations, and what sharing one registry and blob folder between servers needs:
several ``Store`` objects on one real PostgreSQL stand for several server processes."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bundles import Bundle
from test_store import db_url, ingest

from easytensor_jupyter.inference.store import (
    DB_NAME,
    LATEST_VERSION,
    SHARED_GRACE_S,
    SchemaTooNew,
    Store,
)

__all__ = ["db_url"]

# The schema exactly as the store wrote it before migrations existed.
OLD_SCHEMA = """
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


def _old_store(root: Path, bundle: Bundle) -> None:
    """A store as the code before migrations left it: one model, one version, one token."""
    root.mkdir(parents=True)
    db = sqlite3.connect(root / DB_NAME, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_SCHEMA)
    created = "2024-05-06T07:08:09Z"
    db.execute("INSERT INTO models VALUES ('old-abc123', 'Old', 1, 1, ?)", (created,))
    size = sum(e.size for e in bundle.manifest.files.values())
    db.execute(
        "INSERT INTO versions VALUES ('old-abc123', 1, ?, ?, 'key', ?)",
        (created, bundle.manifest.model_dump_json(), size),
    )
    for name, entry in bundle.manifest.files.items():
        db.execute(
            "INSERT INTO version_files VALUES ('old-abc123', 1, ?, ?, ?)",
            (name, entry.sha256, entry.size),
        )
    db.execute(
        "INSERT INTO tokens VALUES ('tok_1', 'old-abc123', ?, ?, NULL, NULL)", ("f" * 64, created)
    )
    db.close()


def _versions(store: Store) -> list[tuple[int, str]]:
    rows = store.db.connection().execute(
        "SELECT version, summary FROM schema_version ORDER BY version"
    )
    return [(int(r[0]), str(r[1])) for r in rows]


def test_a_store_from_before_migrations_is_upgraded(
    tmp_path: Path, bundle_factory: Callable[..., Bundle]
) -> None:
    root = tmp_path / "store"
    bundle = bundle_factory(name="Old")
    _old_store(root, bundle)
    store = Store(root)
    store.blobs.prepare()
    ingest(store, bundle).release()
    store.open()
    assert [v for v, _ in _versions(store)] == [1, 2, 3, 4] and LATEST_VERSION == 4
    model = store.get_model("old-abc123")
    assert (model.name, model.default_version, model.scaling) == ("Old", 1, None)
    assert store.resolve_version("old-abc123", None).manifest == bundle.manifest
    assert store.token_by_hash("f" * 64) is not None
    assert [t.label for t in store.list_tokens("old-abc123")] == [None]
    labelled = store.add_token("old-abc123", "e" * 64, label="notebook demo.ipynb, cell 3")
    assert store.list_tokens("old-abc123")[-1] == labelled
    assert store.blobs.all_hashes() == {e.sha256 for e in bundle.manifest.files.values()}
    store.set_scaling("old-abc123", {"replicas": 2})
    store.close()

    again = Store(root)
    again.open()
    assert [v for v, _ in _versions(again)] == [1, 2, 3, 4], "nothing is applied twice"
    assert again.get_model("old-abc123").scaling == {"replicas": 2}
    second = bundle_factory(name="Old", init_kwargs={"tag": "new"})
    ingest(again, second).release()
    assert again.create_version(second.manifest).version == 2
    again.close()
    with sqlite3.connect(root / DB_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_new_store_records_every_migration(tmp_path: Path, db_url: str | None) -> None:
    store = Store(tmp_path / "store", db_url)
    store.open()
    recorded = _versions(store)
    assert [v for v, _ in recorded] == list(range(1, LATEST_VERSION + 1))
    assert "scaling" in recorded[1][1]
    store.close()


def test_a_newer_schema_is_refused(tmp_path: Path, db_url: str | None) -> None:
    store = Store(tmp_path / "store", db_url)
    store.open()
    with store.db.write() as conn:
        conn.execute(
            "INSERT INTO schema_version (version, applied_at, summary) VALUES (?, ?, ?)",
            (LATEST_VERSION + 7, "2099-01-01T00:00:00Z", "from the future"),
        )
    store.close()
    later = Store(tmp_path / "store", db_url)
    with pytest.raises(SchemaTooNew, match=f"schema version {LATEST_VERSION + 7}") as err:
        later.open()
    assert "upgrade easytensor-jupyter" in str(err.value)
    assert later.db.describe() in str(err.value)
    later.close()


def test_servers_starting_together_migrate_once(tmp_path: Path, postgres_db: str) -> None:
    stores = [Store(tmp_path / "store", postgres_db) for _ in range(6)]
    barrier = threading.Barrier(len(stores))

    def start(store: Store) -> None:
        barrier.wait()
        store.open()

    with ThreadPoolExecutor(len(stores)) as pool:
        list(pool.map(start, stores))
    assert [v for v, _ in _versions(stores[0])] == list(range(1, LATEST_VERSION + 1))
    for store in stores:
        store.close()


def test_writers_in_two_servers_get_consecutive_versions(
    tmp_path: Path, postgres_db: str, bundle_factory: Callable[..., Bundle]
) -> None:
    root = tmp_path / "store"
    servers = [Store(root, postgres_db), Store(root, postgres_db)]
    for server in servers:
        server.open()
    bundles = [bundle_factory(name="shared", init_kwargs={"tag": str(i)}) for i in range(16)]
    for bundle in bundles:
        ingest(servers[0], bundle)
    barrier = threading.Barrier(len(bundles))

    def create(index: int) -> int:
        barrier.wait()
        return servers[index % 2].create_version(bundles[index].manifest).version

    with ThreadPoolExecutor(len(bundles)) as pool:
        versions = list(pool.map(create, range(len(bundles))))
    assert sorted(versions) == list(range(1, len(bundles) + 1))
    for server in servers:
        model = server.list_models()
        assert len(model) == 1 and model[0].default_version == len(bundles)
        assert [v.version for v in model[0].versions] == list(range(1, len(bundles) + 1))
    for server in servers:
        server.close()


def _age(store: Store, hashes: set[str], seconds: float) -> None:
    then = time.time() - seconds
    for sha in hashes:
        os.utime(store.blobs.path(sha), (then, then))


def test_a_shared_store_spares_young_blobs_at_open(
    tmp_path: Path, postgres_db: str, bundle_factory: Callable[..., Bundle]
) -> None:
    """Another server's upload in flight has blobs but no version yet: opening must not eat them."""
    root = tmp_path / "store"
    uploading = Store(root, postgres_db)
    uploading.open()
    bundle = bundle_factory(name="in flight")
    sink = ingest(uploading, bundle)
    hashes = {e.sha256 for e in bundle.manifest.files.values()}

    starting = Store(root, postgres_db)
    starting.open()
    assert starting.blobs.all_hashes() == hashes, "young unreferenced blobs are kept"
    assert uploading.create_version(bundle.manifest).version == 1
    sink.release()
    starting.close()

    stale = bundle_factory(name="abandoned", init_kwargs={"tag": "x"})
    ingest(uploading, stale).release()
    stale_only = {e.sha256 for e in stale.manifest.files.values()} - hashes
    _age(uploading, stale_only | hashes, SHARED_GRACE_S + 60)
    later = Store(root, postgres_db)
    later.open()
    assert later.blobs.all_hashes() == hashes, "old unreferenced blobs go, referenced ones stay"
    later.close()
    uploading.close()


def test_sqlite_collects_every_unreferenced_blob_at_open(
    tmp_path: Path, bundle_factory: Callable[..., Bundle]
) -> None:
    """One server owns a SQLite store, so nothing unreferenced can be in flight at its start."""
    root = tmp_path / "store"
    first = Store(root)
    first.open()
    ingest(first, bundle_factory(name="crashed")).release()
    first.close()
    second = Store(root)
    second.open()
    assert second.blobs.all_hashes() == set()
    second.close()
