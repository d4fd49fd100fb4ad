"""Faults, caused for real: kill -9 of a worker and of the server, a full disk, a locked
database, a worker that leaks memory. After each, the server must answer every request it took,
keep every model it had, and hold nothing half-written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from bundles import Bundle
from servers import RunningServer, alive
from test_security_sandbox import PROBE_SOURCE

__all__ = ["check_store"]

BIG_SOURCE = """
from torch import nn


class Big(nn.Module):
    def __init__(self, n=1024):
        super().__init__()
        self.linear = nn.Linear(n, n)

    def predict_single(self, x):
        return {"n": self.linear.in_features, "x": x}
"""


def check_store(store: Path) -> dict[str, Any]:
    """Consistency of a store at rest: integrity, no temp files, blobs == references."""
    with sqlite3.connect(f"file:{store / 'easytensor.sqlite3'}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        referenced = {r[0] for r in db.execute("SELECT sha256 FROM version_files")}
        versions = db.execute("SELECT model_id, version FROM versions").fetchall()
        names = {r[0] for r in db.execute("SELECT name FROM models")}
        orphans = db.execute(
            "SELECT count(*) FROM versions v LEFT JOIN version_files f "
            "ON f.model_id = v.model_id AND f.version = v.version WHERE f.sha256 IS NULL"
        ).fetchone()[0]
    blobs = {p.name for p in (store / "blobs").glob("??/*")}
    leftovers = list((store / "tmp").iterdir())
    assert leftovers == [], f"temp files left in the store: {leftovers}"
    assert orphans == 0, "a version without files"
    assert referenced <= blobs, f"missing blobs: {referenced - blobs}"
    assert blobs <= referenced, f"unreferenced blobs: {blobs - referenced}"
    return {"names": names, "versions": versions, "blobs": blobs}


def _restarts(server: RunningServer, reason: str) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    prefix = "easytensor_worker_restarts_total{"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and f'reason="{reason}"' in line
    )


def _upload(server: RunningServer, bundle: Bundle) -> dict[str, Any]:
    response = server.upload(bundle)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_kill9_of_a_worker_mid_request_answers_every_request(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    server = spawn_server("--predict-timeout", "60", "--no-standby")
    model = _upload(server, bundle_factory(name="victim"))
    assert server.predict(model["id"], ["warm"]).status_code == 200
    (worker,) = server.worker_pids()
    with ThreadPoolExecutor(6) as pool:
        held = [pool.submit(server.predict, model["id"], ["hang"]) for _ in range(6)]
        time.sleep(1.0)
        assert not any(f.done() for f in held), "requests finished before the kill"
        os.kill(worker, signal.SIGKILL)
        answers = [f.result(timeout=30) for f in held]
    assert [a.status_code for a in answers] == [502] * 6, [a.text for a in answers]
    for answer in answers:
        error = answer.json()["error"]
        assert error["code"] == "worker_crashed" and error["detail"]["signal"] == 9, error
        assert "killed by signal 9" in error["message"]
    again = server.predict(model["id"], ["after"])
    assert again.status_code == 200, again.text
    assert server.worker_pids() != [worker]
    assert _restarts(server, "crash") == 1
    assert _restarts(server, "memory") == 0


def _slow_stream(
    bundle: Bundle, half_sent: threading.Event, never: threading.Event
) -> Iterator[bytes]:
    data = bundle.tar_bytes()
    half = len(data) // 2
    yield data[:half]
    half_sent.set()
    never.wait(60)
    yield data[half:]


def test_kill9_of_the_server_mid_upload_then_restart(
    spawn_server: Callable[..., RunningServer],
    bundle_factory: Callable[..., Bundle],
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    server = spawn_server("--no-standby", home=home)
    kept = _upload(server, bundle_factory(name="kept"))
    assert server.predict(kept["id"], ["before"], token=kept["query_token"]).status_code == 200
    big = bundle_factory(name="half", source=BIG_SOURCE, class_name="Big", sample=1)
    half_sent, never = threading.Event(), threading.Event()

    def upload() -> None:
        with contextlib.suppress(requests.RequestException):
            requests.post(
                f"{server.url}/v1/models",
                data=_slow_stream(big, half_sent, never),
                headers={**server.admin, "Content-Type": "application/x-tar"},
                timeout=60,
            )

    sender = threading.Thread(target=upload, daemon=True)
    sender.start()
    assert half_sent.wait(30)
    deadline = time.monotonic() + 10
    while not any(p.stat().st_size > 0 for p in (server.store / "tmp").iterdir()):
        assert time.monotonic() < deadline, "the upload never reached the store"
        time.sleep(0.05)
    workers = server.worker_pids()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    never.set()
    sender.join(30)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in workers), "workers outlived a killed server"

    restarted = spawn_server("--no-standby", home=home)
    state = check_store(restarted.store)
    assert state["names"] == {"kept"} and state["versions"] == [(kept["id"], 1)]
    listed = requests.get(f"{restarted.url}/v1/models", headers=restarted.admin).json()
    assert [m["name"] for m in listed["models"]] == ["kept"]
    again = restarted.predict(kept["id"], ["after"], token=kept["query_token"])
    assert again.status_code == 200, again.text
    assert _upload(restarted, big)["version"] == 1
    check_store(restarted.store)


@pytest.fixture
def tiny_store(tmpfs: Callable[[str], Path]) -> Path:
    """A 3 MB tmpfs for the store."""
    return tmpfs("3m")


def _free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_full_disk_fails_the_upload_cleanly(
    spawn_server: Callable[..., RunningServer],
    bundle_factory: Callable[..., Bundle],
    tiny_store: Path,
) -> None:
    server = spawn_server("--no-standby", store=tiny_store)
    kept = _upload(server, bundle_factory(name="kept"))
    free_before = _free(tiny_store)
    big = bundle_factory(name="big", source=BIG_SOURCE, class_name="Big", sample=1)
    assert big.manifest.files["weights.safetensors"].size > free_before
    refused = server.upload(big)
    assert refused.status_code == 507, refused.text
    error = refused.json()["error"]
    assert error["code"] == "store_full" and "out of space" in error["message"]
    assert check_store(tiny_store)["names"] == {"kept"}
    assert _free(tiny_store) >= free_before - 64 * 1024

    filler = tiny_store / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, _free(tiny_store) - 12 * 1024))
    outcomes = []
    for seed in range(1, 4):
        response = server.upload(bundle_factory(name=f"small {seed}", seed=seed))
        outcomes.append(response.status_code)
        assert response.status_code in (201, 507), response.text
        if response.status_code == 507:
            assert response.json()["error"]["code"] == "store_full"
    assert 507 in outcomes
    filler.unlink()
    state = check_store(tiny_store)
    assert "kept" in state["names"]
    assert server.predict(kept["id"], ["still here"]).status_code == 200
    after = server.upload(bundle_factory(name="after", seed=9))
    assert after.status_code == 201, after.text
    check_store(tiny_store)


HOLD_S = 6.0


def test_sqlite_busy_under_concurrent_uploads(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    server = spawn_server()
    served = _upload(server, bundle_factory(name="served"))
    bundles = [bundle_factory(name="same", seed=s) for s in range(3)]
    bundles += [bundle_factory(name=f"other {s}", seed=s) for s in range(3)]
    db = sqlite3.connect(server.store / "easytensor.sqlite3", isolation_level=None, timeout=30)
    db.execute("BEGIN IMMEDIATE")
    locked_at = time.monotonic()
    with ThreadPoolExecutor(len(bundles)) as pool:
        uploads = [pool.submit(server.upload, b) for b in bundles]
        reads = [server.predict(served["id"], ["during lock"]) for _ in range(5)]
        time.sleep(max(0.0, HOLD_S - (time.monotonic() - locked_at)))
        assert not any(f.done() for f in uploads), "an upload finished while the store was locked"
        db.execute("COMMIT")
        released = time.monotonic()
        answers = [f.result(timeout=120) for f in uploads]
        finished = time.monotonic()
    db.close()
    assert [r.status_code for r in reads] == [200] * 5
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    same = sorted(a.json()["version"] for a in answers[:3])
    assert same == [1, 2, 3]
    assert finished >= released
    state = check_store(server.store)
    assert len(state["versions"]) == 1 + 6


def test_worker_memory_limit_replaces_the_worker(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    server = spawn_server("--worker-memory-mb", "450", "--predict-timeout", "60")
    model = _upload(
        server,
        bundle_factory(name="leaky", source=PROBE_SOURCE, class_name="Probe", sample={"do": "x"}),
    )
    ok = server.predict(model["id"], [{"do": "echo"}])
    assert ok.status_code == 200, ok.text
    started = time.monotonic()
    leaked = server.predict(model["id"], [{"do": "leak", "arg": 16}])
    assert time.monotonic() - started < 30
    assert leaked.status_code == 502, leaked.text
    error = leaked.json()["error"]
    assert error["code"] == "worker_memory_limit", error
    assert "over the 450 MB limit (--worker-memory-mb)" in error["message"], error
    assert "replaced" in error["message"]
    assert error["detail"]["reason"] == "memory"
    assert 450 < error["detail"]["used_mb"] < 450 + 200
    again = server.predict(model["id"], [{"do": "echo"}])
    assert again.status_code == 200, again.text
    assert _restarts(server, "memory") == 1
