"""The request log's rows and each model's policy in the registry, on SQLite and on a real
PostgreSQL: ids in time order, filters, pages, bytes inputs, retention by count and bytes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from easytensor_jupyter.inference.request_log import LogLimits, RequestLog, parse_mode
from easytensor_jupyter.inference.store import NotFoundError, Store
from easytensor_jupyter.inference.store.request_log import LogSettings


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = request.getfixturevalue("postgres_db") if request.param == "postgresql" else None
    opened = Store(tmp_path / "store", url)
    opened.open()
    with opened.db.write() as conn:
        conn.execute(
            "INSERT INTO models (id, name, default_version, last_version, created_at) "
            "VALUES ('m', 'm', 1, 2, 'now')"
        )
    try:
        yield opened
    finally:
        opened.close()


def _note(
    text: str | bytes, status: int = 200, version: int = 1, ctype: str = "text/plain"
) -> tuple[object, ...]:
    body = text if isinstance(text, bytes) else text.encode()
    answer = [len(text)] if status < 400 else {"error": {"code": "model_error"}}
    code = "ok" if status < 400 else "model_error"
    return ("m", version, "live", status, code, 1.5, "cell 3", ctype, body, len(body), answer,
            None, time.time())  # fmt: skip


def test_rows_come_back_filtered_paged_and_with_bytes(store: Store) -> None:
    log = RequestLog(store, "all", LogLimits())
    log._write([_note("a"), _note("b", 422), _note("c", version=2)])
    log._write([_note(b"\x89PNG", ctype="image/png"), _note('{"instances": [1, 2]}', ctype="application/json")])  # fmt: skip
    rows = store.requests.query("m")
    assert [r.status for r in rows] == [200, 200, 200, 422, 200]
    assert rows[0].input == '{"instances": [1, 2]}' and rows[1].input_blob == b"\x89PNG"
    assert rows[4].input == '["a"]' and rows[4].token_label == "cell 3"
    assert [r.id for r in rows] == sorted((r.id for r in rows), reverse=True)
    assert [r.input for r in store.requests.query("m", status="error")] == ['["b"]']
    assert [r.input for r in store.requests.query("m", status="model_error")] == ['["b"]']
    assert [r.version for r in store.requests.query("m", version=2)] == [2]
    first = store.requests.query("m", limit=2)
    rest = store.requests.query("m", before=first[-1].id, limit=10)
    assert [r.id for r in first + rest] == [r.id for r in rows]
    assert store.requests.query("m", since=time.time() + 5) == []
    assert store.requests.totals("m") == (5, sum(r.size for r in rows))


def test_retention_keeps_the_newest_within_count_and_bytes(store: Store) -> None:
    log = RequestLog(store, "all", LogLimits(keep=30, keep_bytes=1 << 30))
    for start in range(0, 100, 10):
        log._write([_note(f"n{i}") for i in range(start, start + 10)])
        assert store.requests.totals("m")[0] <= 30
    assert store.requests.query("m", limit=1)[0].input == '["n99"]'
    log.retention["m"] = (1000, 2000)
    log._write([_note("x" * 300)])
    count, size = store.requests.totals("m")
    assert size <= 2000 and count >= 1
    assert store.requests.query("m", limit=1)[0].input == '["' + "x" * 300 + '"]'


def test_policies_round_trip_and_need_the_model(store: Store) -> None:
    settings = LogSettings("sample:0.5", 10, None, {"split": {"1": 90, "2": 10}})
    store.requests.save_settings("m", settings)
    store.requests.save_settings("m", settings)
    assert store.requests.settings() == {"m": settings}
    with pytest.raises(NotFoundError, match="no model 'gone'"):
        store.requests.save_settings("gone", settings)


def test_log_modes_parse_or_say_what_works() -> None:
    assert parse_mode("ALL") == ("all", 1.0)
    assert parse_mode("sample:10%") == ("sample", 0.1)
    assert parse_mode("sample:0.25") == ("sample", 0.25)
    for bad in ("sample:2", "sometimes", "sample:x"):
        with pytest.raises(ValueError, match="off, errors, all or sample:P"):
            parse_mode(bad)
