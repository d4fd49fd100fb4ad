"""Request logs, canary splits, shadows, promote/rollback, replay and per-version metrics, end to
end on a real ``easytensor serve`` with real workers.

One server is shared by the module (``--request-log all``); the model has three versions: v1
and v2 are the tiny model with different tags (so their answers differ), v3 a model that sleeps
50 ms and otherwise answers like v1 (a slow shadow that agrees).
"""

from __future__ import annotations

import http.client
import json
import math
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from bundles import make_bundle
from servers import RunningServer, start_server, wait_until

SLEEPY_SOURCE = textwrap.dedent(
    """
    import time

    import torch
    from torch import nn


    class Sleepy(nn.Module):
        def __init__(self, tag="base"):
            super().__init__()
            self.linear = nn.Linear(1, 1)
            self.tag = tag

        def predict_single(self, x):
            time.sleep(0.05)
            return {"text": x, "length": len(x), "tag": self.tag}
    """
)
NAME = "traffic-model"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, str]]:
    """The server, the model's id and its query token. The module's last test restarts the
    server (``RESTARTED`` keeps the new one, so it is stopped here too)."""
    home = tmp_path_factory.mktemp("traffic-home")
    server = start_server(home, "--request-log", "all", "--predict-timeout", "10")
    try:
        first = server.upload(make_bundle(home / "b1", name=NAME, init_kwargs={"tag": "a"}))
        assert first.status_code == 201, first.text
        model_id, token = first.json()["id"], first.json()["query_token"]
        second = server.upload(
            make_bundle(home / "b2", name=NAME, init_kwargs={"tag": "b"}),
            params={"candidate": "true", "create_token": "false"},
        )
        assert second.status_code == 201 and second.json()["version"] == 2, second.text
        third = server.upload(
            make_bundle(
                home / "b3",
                name=NAME,
                source=SLEEPY_SOURCE,
                class_name="Sleepy",
                init_kwargs={"tag": "a"},
            ),
            params={"candidate": "true", "create_token": "false"},
        )
        assert third.status_code == 201 and third.json()["version"] == 3, third.text
        yield server, model_id, token
    finally:
        server.stop()
        for again in RESTARTED:
            again.stop()


RESTARTED: list[RunningServer] = []


def _api(server: RunningServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url + path, headers=server.admin, timeout=60, **kwargs)


def _traffic(server: RunningServer, model_id: str, **body: Any) -> dict[str, Any]:
    response = _api(server, "PUT", f"/v1/models/{model_id}/traffic", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _records(server: RunningServer, model_id: str, **params: Any) -> list[dict[str, Any]]:
    response = _api(server, "GET", f"/v1/models/{model_id}/requests", params=params)
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


class _Caller:
    """Keep-alive HTTP on one connection: fast enough for thousands of requests in a test."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        self.auth = f"Bearer {token}"

    def ask(self, text: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any, float]:
        body = json.dumps({"instances": [text]})
        started = time.perf_counter()
        self.conn.request(
            "POST",
            self.path,
            body,
            {"Authorization": self.auth, "Content-Type": "application/json", **(headers or {})},
        )
        response = self.conn.getresponse()
        payload = json.loads(response.read())
        elapsed = time.perf_counter() - started
        return response.status, response.getheader("X-EasyTensor-Version") or "", payload, elapsed

    path = ""


def _caller(server: RunningServer, model_id: str, token: str) -> _Caller:
    caller = _Caller(server.url, token)
    caller.path = f"/v1/models/{model_id}/predict"
    return caller


def test_answers_name_their_version_and_the_log_keeps_them(
    rig: tuple[RunningServer, str, str],
) -> None:
    server, model_id, token = rig
    fast = server.predict(model_id, ["hello"], token=token)
    assert fast.status_code == 200 and fast.headers["X-EasyTensor-Version"] == "1"
    assert fast.json()["predictions"][0]["tag"] == "a"
    # An Origin header sends the request the FastAPI way: the header is there too.
    routed = requests.post(
        f"{server.url}/v1/models/{model_id}/predict",
        json={"instances": ["hi"]},
        headers={"Authorization": f"Bearer {token}", "Origin": "http://x"},
        timeout=30,
    )
    assert routed.headers.get("X-EasyTensor-Version") == "1", routed.headers
    failed = server.predict(model_id, ["raise"], token=token)
    assert failed.status_code == 422 and failed.headers["X-EasyTensor-Version"] == "1"
    raw = requests.post(
        f"{server.url}/v1/models/{model_id}/predict",
        data=b"\x89PNG-bytes",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert raw.status_code == 200 and raw.headers["X-EasyTensor-Version"] == "1"

    records = _records(server, model_id, limit=4)
    assert [r["status"] for r in records] == [200, 422, 200, 200]
    newest, error = records[0], records[1]
    assert newest["input"] == [{"b64": "iVBORy1ieXRlcw=="}]
    assert error["code"] == "model_error" and "boom" in json.dumps(error["output"])
    assert records[3]["input"] == ["hello"] and records[3]["output"][0]["tag"] == "a"
    assert all(r["token"] == "upload of v1" and r["version"] == 1 for r in records)
    assert all(r["latency_ms"] > 0 for r in records)
    assert token not in json.dumps(records)
    errors = _records(server, model_id, status="error")
    assert [r["input"] for r in errors] == [["raise"]]
    page = _api(server, "GET", f"/v1/models/{model_id}/requests", params={"limit": 2}).json()
    rest = _records(server, model_id, limit=2, before=page["next"])
    assert [r["id"] for r in page["records"] + rest] == [r["id"] for r in records]
    assert _records(server, model_id, since=time.time() + 60) == []
    bad = _api(server, "GET", f"/v1/models/{model_id}/requests", params={"since": "yesterday"})
    assert bad.status_code == 400 and "ISO 8601" in bad.json()["error"]["message"]


def test_canary_shares_stay_within_bounds_sticky_keys_stay_put(
    rig: tuple[RunningServer, str, str],
) -> None:
    server, model_id, token = rig
    view = _traffic(server, model_id, split={"1": 90, "2": 10})
    assert view["split"] == {"1": 90, "2": 10} and view["default_version"] == 1
    n, threads = 3000, 6

    def run(worker: int) -> Counter[str]:
        caller, seen = _caller(server, model_id, token), Counter[str]()
        for _ in range(n // threads):
            status, version, payload, _ = caller.ask("hello")
            assert status == 200
            assert payload["predictions"][0]["tag"] == {"1": "a", "2": "b"}[version]
            seen[version] += 1
        return seen

    with ThreadPoolExecutor(threads) as pool:
        counts = sum(pool.map(run, range(threads)), Counter[str]())
    sd = math.sqrt(n * 0.1 * 0.9)
    assert abs(counts["2"] - n * 0.1) < 5 * sd, counts
    assert counts["1"] + counts["2"] == n

    _traffic(server, model_id, split={"1": 50, "2": 50}, sticky=True)
    caller = _caller(server, model_id, token)
    for key in ("alice", "bob", "carol", "dave"):
        versions = {caller.ask("x", {"X-EasyTensor-Key": key})[1] for _ in range(8)}
        assert len(versions) == 1, (key, versions)
    keyed = {caller.ask("x", {"X-EasyTensor-Key": f"user-{i}"})[1] for i in range(40)}
    assert keyed == {"1", "2"}
    pinned = server.predict(model_id, ["x"], token=token, params={"version": 2})
    assert pinned.headers["X-EasyTensor-Version"] == "2"
    for _ in range(10):
        explicit = server.predict(model_id, ["x"], token=token, params={"version": 1})
        assert explicit.headers["X-EasyTensor-Version"] == "1"
    assert _api(server, "POST", f"/v1/models/{model_id}/traffic/rollback").status_code == 200
    assert {caller.ask("x")[1] for _ in range(20)} == {"1"}


def test_a_shadow_never_changes_or_delays_the_live_answer(
    rig: tuple[RunningServer, str, str],
) -> None:
    server, model_id, token = rig
    caller = _caller(server, model_id, token)

    def block(count: int) -> list[float]:
        times = []
        for i in range(count):
            status, version, payload, elapsed = caller.ask(f"live {i}")
            assert (status, version, payload["predictions"][0]["tag"]) == (200, "1", "a")
            times.append(elapsed)
        return times

    block(20)
    without = block(150)
    view = _traffic(server, model_id, shadow=3)
    assert view["shadow"] == 3
    with_shadow = block(150)
    # Medians of the two runs, side by side; the shadow sleeps 50 ms per request.
    base, shadowed = statistics.median(without), statistics.median(with_shadow)
    print(f"live median without shadow {base * 1000:.2f} ms, with {shadowed * 1000:.2f} ms")
    assert shadowed < base * 1.5 + 0.003, (base, shadowed)
    wait_until(
        lambda: (
            (_api(server, "GET", f"/v1/models/{model_id}/traffic").json()["shadow_stats"])[
                "compared"
            ]
            >= 3
        ),
        30,
        "shadow answers",
    )
    stats = _api(server, "GET", f"/v1/models/{model_id}/traffic").json()["shadow_stats"]
    assert stats["agreement"] == 1.0 and stats["errors"] == 0, stats
    assert stats["dropped"] > 0, "a 50 ms shadow cannot keep up: copies are dropped, not live"
    shadows = _records(server, model_id, kind="shadow", limit=5)
    assert shadows and all(r["version"] == 3 and r["agrees"] is True for r in shadows)
    assert shadows[0]["latency_ms"] >= 50
    _traffic(server, model_id, shadow=2)

    def shadowed_on_v2() -> bool:
        # Copies still queued for v3 may fill the queue, and a full queue drops the new one.
        caller.ask("compare me")
        return bool(_records(server, model_id, kind="shadow", version=2))

    wait_until(shadowed_on_v2, 60, "a shadow answer from v2", poll=0.5)
    assert _records(server, model_id, kind="shadow", version=2)[0]["agrees"] is False
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert f'{{model="{model_id}",result="dropped",version="3"}}' in metrics
    _api(server, "POST", f"/v1/models/{model_id}/traffic/rollback")


def test_promote_and_rollback_in_one_call(rig: tuple[RunningServer, str, str]) -> None:
    server, model_id, token = rig
    _traffic(server, model_id, split={"1": 50, "2": 50}, shadow=3)
    promoted = _api(
        server, "POST", f"/v1/models/{model_id}/traffic/promote", json={"version": 2}
    ).json()
    assert promoted["default_version"] == 2 and promoted["split"] is None
    assert promoted["shadow"] is None and promoted["previous_default"] == 1
    assert server.predict(model_id, ["x"], token=token).headers["X-EasyTensor-Version"] == "2"
    back = _api(server, "POST", f"/v1/models/{model_id}/traffic/rollback").json()
    assert back["default_version"] == 1
    assert server.predict(model_id, ["x"], token=token).headers["X-EasyTensor-Version"] == "1"
    nothing = _api(server, "POST", f"/v1/models/{model_id}/traffic/rollback")
    assert nothing.status_code == 409 and "nothing" in nothing.json()["error"]["code"]
    unknown = _api(server, "PUT", f"/v1/models/{model_id}/traffic", json={"split": {"9": 1}})
    assert unknown.status_code == 422 and "version 9" in unknown.json()["error"]["message"]
    zero = _api(server, "PUT", f"/v1/models/{model_id}/traffic", json={"split": {"1": 0}})
    assert zero.status_code == 422 and "add up to 0" in zero.json()["error"]["message"]


def test_compare_replays_logged_and_given_inputs(rig: tuple[RunningServer, str, str]) -> None:
    server, model_id, _ = rig
    given = _api(
        server,
        "POST",
        f"/v1/models/{model_id}/compare",
        json={"a": 1, "b": 3, "inputs": ["one", "two", [1.0, 2.0, 3.0, 4.0]]},
    ).json()
    assert given["cases"] == 3 and given["source"] == "given"
    # Sleepy has no numeric path: the list input differs, the texts agree.
    assert given["agree"] == 2 and [d["index"] for d in given["differing"]] == [2]
    assert given["latency_ms"]["b"]["median"] >= 50 > given["latency_ms"]["a"]["median"]
    logged = _api(
        server, "POST", f"/v1/models/{model_id}/compare", json={"a": 1, "b": 2, "limit": 10}
    ).json()
    assert logged["source"] == "logged" and logged["cases"] == 10
    assert logged["agreement"] == 0.0 and logged["differing"][0]["a"]["tag"] == "a"


def test_retention_holds_by_count_and_by_bytes(rig: tuple[RunningServer, str, str]) -> None:
    server, model_id, token = rig
    put = _api(server, "PUT", f"/v1/models/{model_id}/request-log", json={"keep": 25})
    assert put.status_code == 200 and put.json()["keep"] == 25 and put.json()["mode"] == "all"
    caller = _caller(server, model_id, token)
    for i in range(60):
        caller.ask(f"r{i}")
    wait_until(
        lambda: _api(server, "GET", f"/v1/models/{model_id}/request-log").json()["records"] <= 25,
        10,
        "the log to be pruned",
    )
    kept = _records(server, model_id, kind="all", limit=100)
    assert len(kept) <= 25 and kept[0]["input"] == ["r59"]
    _api(server, "PUT", f"/v1/models/{model_id}/request-log", json={"keep_mb": 0.002})
    for i in range(30):
        caller.ask("x" * 200 + str(i))
    wait_until(
        lambda: _api(server, "GET", f"/v1/models/{model_id}/request-log").json()["bytes"] <= 2097,
        10,
        "the log to fit its bytes",
    )
    off = _api(server, "PUT", f"/v1/models/{model_id}/request-log", json={"mode": "off"})
    assert off.json()["mode"] == "off"
    before = _records(server, model_id, limit=1)[0]["id"]
    caller.ask("not logged")
    assert _records(server, model_id, limit=1)[0]["id"] == before
    errors = _api(server, "PUT", f"/v1/models/{model_id}/request-log", json={"mode": "errors"})
    assert errors.json()["mode"] == "errors"
    caller.ask("fine")
    caller.ask("raise")
    assert _records(server, model_id, limit=1)[0]["input"] == ["raise"]
    bad = _api(server, "PUT", f"/v1/models/{model_id}/request-log", json={"mode": "sample:2"})
    assert bad.status_code == 422 and "sample:0.1" in bad.json()["error"]["message"]
    _api(server, "PUT", f"/v1/models/{model_id}/request-log", json={"mode": "all"})


def test_metrics_count_each_version(rig: tuple[RunningServer, str, str]) -> None:
    server, model_id, token = rig
    server.predict(model_id, ["x"], token=token, params={"version": 2})
    server.predict(model_id, ["raise"], token=token, params={"version": 2})
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    labels = f'model="{model_id}",version="2"'
    assert f"easytensor_version_requests_total{{{labels}}}" in text
    assert f"easytensor_version_errors_total{{{labels}}} " in text
    assert f"easytensor_version_latency_seconds_count{{{labels}}}" in text


def test_cli_sets_the_log_and_traffic_and_prints_logs(
    rig: tuple[RunningServer, str, str],
) -> None:
    server = rig[0]
    env = {"EASYTENSOR_HOME": str(server.home), "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "easytensor_jupyter.cli", *args, "--url", server.url]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    log = cli("models", "log", NAME, "sample:50%")
    assert log.returncode == 0 and "request log sample:0.5" in log.stdout, log.stderr
    cli("models", "log", NAME, "all")
    split = cli("models", "traffic", NAME, "--split", "1=90,2=10")
    assert split.returncode == 0 and "split: v1 90%, v2 10%" in split.stdout, split.stderr
    wrong = cli("models", "traffic", NAME, "--split", "1:90")
    assert wrong.returncode == 2 and "VERSION=WEIGHT" in wrong.stderr
    back = cli("models", "traffic", NAME, "--rollback")
    assert back.returncode == 0 and "no split" in back.stdout
    logs = cli("logs", NAME, "-n", "3")
    assert logs.returncode == 0 and len(logs.stdout.splitlines()) == 3, logs.stderr
    assert " v1 " in logs.stdout or " v2 " in logs.stdout


def test_logs_survive_a_restart_and_redaction_drops_inputs(
    rig: tuple[RunningServer, str, str],
) -> None:
    server, model_id, token = rig
    server.predict(model_id, ["before the restart"], token=token)
    before = _records(server, model_id, kind="all", limit=1000)
    server.stop()
    again = start_server(server.home, "--log-redact")
    RESTARTED.append(again)
    after = _records(again, model_id, kind="all", limit=1000)
    assert [r["id"] for r in after] == [r["id"] for r in before]
    assert after[0]["input"] == ["before the restart"]
    # The model's own setting (all) outlives the restart; --log-redact now drops inputs.
    answer = again.predict(model_id, ["secret text"], token=token)
    assert answer.status_code == 200
    newest = _records(again, model_id, limit=1)[0]
    assert newest["input"] is None and newest["input_note"] == "redacted (--log-redact)"
    # Only the input goes: this model happens to echo its input in its answer.
    assert newest["output"][0]["length"] == len("secret text")
    settings = _api(again, "GET", f"/v1/models/{model_id}/request-log").json()
    assert settings["redact"] is True and settings["mode"] == "all"
    assert settings["server_default"] == "off", "easytensor serve logs nothing by default"
