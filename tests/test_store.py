"""The registry's public API, run on both backends: SQLite in the store folder and a real
PostgreSQL (a fresh database per test). Blobs arrive through the real bundle reader, as an upload
would bring them."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bundles import Bundle

from easytensor_jupyter.bundle import read_bundle_stream
from easytensor_jupyter.inference.store import (
    ConflictError,
    CreateResult,
    ModelRecord,
    NotFoundError,
    RegistryUnavailable,
    Store,
    content_key,
    redact_url,
)
from easytensor_jupyter.inference.store.blobs import PinningSink
from easytensor_jupyter.inference.store.database import to_pyformat


def ingest(store: Store, bundle: Bundle) -> PinningSink:
    """Put a bundle's files in the store's blobs, pinned, as an upload in flight would."""
    sink = PinningSink(store.blobs)
    read_bundle_stream(io.BytesIO(bundle.tar_bytes()), sink)
    return sink


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None for SQLite; for PostgreSQL the URL of a fresh database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_db")
    return url


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    opened = Store(tmp_path / "store", db_url)
    opened.open()
    try:
        yield opened
    finally:
        opened.close()


def test_versions_and_garbage_collection(
    store: Store, bundle_factory: Callable[..., Bundle]
) -> None:
    first = bundle_factory(name="Net", init_kwargs={"tag": "a"})
    second = bundle_factory(name="Net", init_kwargs={"tag": "b"}, seed=1)
    sinks = [ingest(store, first), ingest(store, second)]
    created = store.create_version(first.manifest)
    assert created.model_id.startswith("net-") and created.version == 1
    assert store.find_unchanged(first.manifest) == CreateResult(
        created.model_id, "Net", 1, unchanged=True
    )
    assert store.create_version(second.manifest).version == 2
    assert store.create_version(second.manifest).unchanged
    assert store.create_version(second.manifest, force=True).version == 3
    for sink in sinks:
        sink.release()
    assert content_key(first.manifest) != content_key(second.manifest)

    model = store.get_model(created.model_id)
    assert [v.version for v in model.versions] == [1, 2, 3] and model.default_version == 3
    source = first.manifest.files["model.py"]
    assert source == second.manifest.files["model.py"]
    weights = sum(b.manifest.files["weights.safetensors"].size for b in (first, second))
    assert model.size_bytes == source.size + weights, "a blob two versions share counts once"
    with pytest.raises(ConflictError, match="is the default"):
        store.delete_version(created.model_id, 3)
    store.set_default(created.model_id, 1)
    assert store.delete_version(created.model_id, 2) == "version"
    assert store.delete_version(created.model_id, 3) == "version"
    weights_b = second.manifest.files["weights.safetensors"].sha256
    assert not store.blobs.has(weights_b), "a blob no version uses is removed"
    assert store.resolve_version(created.model_id, None).version == 1
    with pytest.raises(NotFoundError, match="has no version 2"):
        store.resolve_version(created.model_id, 2)
    assert store.delete_version(created.model_id, 1) == "model"
    with pytest.raises(NotFoundError, match="no model"):
        store.get_model(created.model_id)
    with pytest.raises(NotFoundError, match="no model"):
        store.resolve_version(created.model_id, None)
    assert store.blobs.all_hashes() == set()
    assert store.count_models() == 0


def test_version_numbers_never_repeat(store: Store, bundle_factory: Callable[..., Bundle]) -> None:
    bundles = [bundle_factory(name="again", init_kwargs={"tag": str(i)}) for i in range(3)]
    for bundle in bundles:
        ingest(store, bundle)
    model_id = store.create_version(bundles[0].manifest).model_id
    assert store.create_version(bundles[1].manifest).version == 2
    store.set_default(model_id, 1)
    assert store.delete_version(model_id, 2) == "version"
    assert store.create_version(bundles[2].manifest).version == 3
    assert [v.version for v in store.get_model(model_id).versions] == [1, 3]
    with pytest.raises(NotFoundError, match="has no version 2"):
        store.set_default(model_id, 2)
    with pytest.raises(NotFoundError, match="no model"):
        store.set_default("nope-000000", 1)


def test_pinned_blobs_survive_collection(
    store: Store, bundle_factory: Callable[..., Bundle]
) -> None:
    bundle = bundle_factory(name="pinned")
    sink = ingest(store, bundle)
    hashes = {e.sha256 for e in bundle.manifest.files.values()}
    assert store.collect(hashes) == []
    sink.release()
    assert store.referenced(hashes) == set()
    assert sorted(store.collect(hashes)) == sorted(hashes)
    assert store.missing(sorted(hashes)) == sorted(hashes)


def test_concurrent_create_version_threads(
    store: Store, bundle_factory: Callable[..., Bundle]
) -> None:
    bundles = [bundle_factory(name="race", init_kwargs={"tag": str(i)}) for i in range(6)]
    for bundle in bundles:
        ingest(store, bundle)
    versions: list[int] = []
    threads = [
        threading.Thread(
            target=lambda b=b: versions.append(store.create_version(b.manifest).version)
        )
        for b in bundles
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]


def test_tokens(store: Store, bundle_factory: Callable[..., Bundle]) -> None:
    bundle = bundle_factory(name="tokens")
    ingest(store, bundle)
    model_id = store.create_version(bundle.manifest).model_id
    first = store.add_token(model_id, "a" * 64)
    second = store.add_token(model_id, "b" * 64)
    assert [t.id for t in store.list_tokens(model_id)] == sorted([first.id, second.id])
    assert store.token_by_hash("a" * 64) == first
    assert store.token_by_hash("c" * 64) is None
    store.touch_tokens({first.id: "2030-01-02T03:04:05Z"})
    store.touch_tokens({})
    touched = store.token_by_hash("a" * 64)
    assert touched is not None and touched.last_used_at == "2030-01-02T03:04:05Z"
    store.revoke_token(model_id, second.id)
    store.revoke_token(model_id, second.id)
    revoked = store.token_by_hash("b" * 64)
    assert revoked is not None and revoked.revoked
    with pytest.raises(NotFoundError, match="has no token"):
        store.revoke_token(model_id, "tok_000000000000")
    with pytest.raises(NotFoundError, match="no model"):
        store.add_token("nope-000000", "d" * 64)
    with pytest.raises(NotFoundError, match="no model"):
        store.list_tokens("nope-000000")
    store.delete_model(model_id)
    assert store.token_by_hash("a" * 64) is None, "tokens go with their model"


def test_set_scaling(store: Store, bundle_factory: Callable[..., Bundle]) -> None:
    bundle = bundle_factory(name="scaled")
    ingest(store, bundle)
    model_id = store.create_version(bundle.manifest).model_id
    assert store.get_model(model_id).scaling is None
    scaling = {"autoscaling": {"min_replicas": 1, "max_replicas": 4, "target": 2.5}}
    store.set_scaling(model_id, scaling)
    assert store.get_model(model_id).scaling == scaling
    assert [m.scaling for m in store.list_models()] == [scaling]
    store.set_scaling(model_id, {"replicas": 3})
    assert store.get_model(model_id).scaling == {"replicas": 3}
    store.set_scaling(model_id, None)
    assert store.get_model(model_id).scaling is None
    with pytest.raises(NotFoundError, match="no model 'nope-000000'"):
        store.set_scaling("nope-000000", {"replicas": 1})
    with pytest.raises(ValueError, match="must be a JSON object"):
        store.set_scaling(model_id, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not JSON"):
        store.set_scaling(model_id, {"bad": object()})


def test_records_keep_their_old_constructor() -> None:
    record = ModelRecord("m-1", "m", 1, "2024-01-01T00:00:00Z", [])
    assert record.scaling is None and record.size_bytes == 0


def test_sizes_past_32_bits(store: Store, bundle_factory: Callable[..., Bundle]) -> None:
    """PostgreSQL's INTEGER stops at 2 GiB; model files do not."""
    bundle = bundle_factory(name="huge")
    ingest(store, bundle)
    big = bundle.manifest.files["weights.safetensors"].model_copy(update={"size": 5 << 30})
    manifest = bundle.manifest.model_copy(
        update={"files": {**bundle.manifest.files, "weights.safetensors": big}}
    )
    created = store.create_version(manifest)
    version = store.resolve_version(created.model_id, None)
    assert version.size_bytes > 5 << 30
    assert store.get_model(created.model_id).size_bytes == version.size_bytes


def test_a_version_whose_blobs_vanished_is_refused(
    store: Store, bundle_factory: Callable[..., Bundle]
) -> None:
    """What another server's collection looks like from here: the files are simply gone."""
    bundle = bundle_factory(name="vanished")
    ingest(store, bundle).release()
    store.collect({e.sha256 for e in bundle.manifest.files.values()})
    with pytest.raises(ConflictError, match=r"removed from the store .* upload again"):
        store.create_version(bundle.manifest)
    assert store.count_models() == 0


def test_describe_names_the_backend_without_secrets(tmp_path: Path, postgres_db: str) -> None:
    sqlite = Store(tmp_path / "a")
    assert sqlite.describe().startswith(f"SQLite at {tmp_path / 'a' / 'easytensor.sqlite3'}")
    secret = postgres_db.replace("postgres@", "postgres:hunter2@") + "?password=hunter3"
    shared = Store(tmp_path / "b", secret)
    shared.open()
    try:
        text = shared.describe()
        assert text.startswith(f"PostgreSQL at {postgres_db}")
        assert "hunter" not in text and "\n" not in text
    finally:
        shared.close()


@pytest.mark.parametrize(
    "url", ["mysql://u:pw@host/db", "sqlite:///tmp/x.db", "", "/var/lib/easytensor"]
)
def test_unsupported_urls_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match=r"postgresql://user\[:password\]@host") as err:
        Store(tmp_path, url)
    assert "pw" not in str(err.value)


def test_unreachable_postgres_fails_at_open(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = Store(tmp_path, f"postgresql://u:pw@127.0.0.1:{port}/db")
    with pytest.raises(RegistryUnavailable, match="cannot connect to the registry at") as err:
        store.open()
    assert "pw" not in str(err.value) and "\n" not in str(err.value)


def test_a_lost_connection_is_reported_then_replaced(
    tmp_path: Path, postgres_db: str, bundle_factory: Callable[..., Bundle]
) -> None:
    import psycopg

    store = Store(tmp_path / "store", postgres_db)
    store.open()
    assert store.count_models() == 0
    with psycopg.connect(postgres_db, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(RegistryUnavailable, match="lost the connection to the registry"):
        store.count_models()
    assert store.count_models() == 0, "the next call opens a new connection"
    bundle = bundle_factory(name="after")
    ingest(store, bundle)
    assert store.create_version(bundle.manifest).version == 1
    store.close()


def test_placeholders_for_psycopg() -> None:
    assert to_pyformat("SELECT ? WHERE a = ? AND b LIKE '5%?'") == (
        "SELECT %s WHERE a = %s AND b LIKE '5%%?'"
    )
    assert to_pyformat('SELECT "odd?name" FROM t WHERE x = ?') == (
        'SELECT "odd?name" FROM t WHERE x = %s'
    )


def test_redact_url() -> None:
    assert redact_url("postgresql://me:pw@db:5432/reg") == "postgresql://me@db:5432/reg"
    assert redact_url("postgresql://db/reg?password=pw&sslmode=require") == (
        "postgresql://db/reg?sslmode=require"
    )
    assert redact_url("postgresql:///reg") == "postgresql:///reg"


def test_resolution_follows_every_writer(
    store: Store, tmp_path: Path, db_url: str | None, bundle_factory: Callable[..., Bundle]
) -> None:
    """The hot-path lookup is kept between reads; a write by this connection, another thread
    or another process's store must still show at once."""
    bundles = [bundle_factory(name="follow", init_kwargs={"tag": str(i)}) for i in range(3)]
    sinks = [ingest(store, b) for b in bundles]
    model_id = store.create_version(bundles[0].manifest).model_id
    store.create_version(bundles[1].manifest)
    assert store.resolve_version(model_id, None).version == 2
    assert store.resolve_version(model_id, None).version == 2
    store.set_default(model_id, 1)
    assert store.resolve_version(model_id, None).version == 1

    done = threading.Thread(target=store.set_default, args=(model_id, 2))
    done.start()
    done.join()
    assert store.resolve_version(model_id, None).version == 2
    token = store.add_token(model_id, "e" * 64)
    assert store.token_by_hash("e" * 64) == token
    done = threading.Thread(target=store.revoke_token, args=(model_id, token.id))
    done.start()
    done.join()
    revoked = store.token_by_hash("e" * 64)
    assert revoked is not None and revoked.revoked

    other = Store(tmp_path / "store", db_url)
    other.open()
    try:
        other.create_version(bundles[2].manifest)
        time.sleep(0.005)  # another process's commit shows within a millisecond
        assert store.resolve_version(model_id, None).version == 3
        assert store.resolve_version(model_id, 3).manifest == bundles[2].manifest
        other.set_default(model_id, 1)
        other.delete_version(model_id, 3)
    finally:
        other.close()
    time.sleep(0.005)
    assert store.resolve_version(model_id, None).version == 1
    with pytest.raises(NotFoundError, match="has no version 3"):
        store.resolve_version(model_id, 3)
    for sink in sinks:
        sink.release()
