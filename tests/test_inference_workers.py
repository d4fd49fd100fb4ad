"""Worker processes: isolation, timeouts, crashes, batching, idle unload."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from bundles import BATCH_SOURCE, Bundle
from servers import RunningServer

from easytensor_jupyter.bundle import Batching


def _restarts(server: RunningServer, model_id: str, reason: str, expected: float) -> float:
    """The restart counter, polled briefly: a worker's exit is recorded as it is reaped."""
    prefix = f'easytensor_worker_restarts_total{{model="{model_id}",reason="{reason}"}}'
    deadline = time.monotonic() + 5
    while True:
        text = requests.get(f"{server.url}/metrics").text
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        value = sum(float(line.rsplit(" ", 1)[1]) for line in lines)
        if value >= expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_endless_prediction_times_out_then_next_is_served(
    server: RunningServer, tiny_model: dict[str, Any]
) -> None:
    model_id = tiny_model["id"]
    started = time.monotonic()
    response = server.predict(model_id, ["hang"])
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "timeout"
    assert 2.5 < time.monotonic() - started < 15
    following = server.predict(model_id, ["after"])
    assert following.status_code == 200, following.text
    assert _restarts(server, model_id, "timeout", 1) == 1


def test_worker_exit_and_segfault_are_502_then_next_is_served(
    server: RunningServer, tiny_model: dict[str, Any]
) -> None:
    model_id = tiny_model["id"]
    exited = server.predict(model_id, ["exit"])
    assert exited.status_code == 502, exited.text
    error = exited.json()["error"]
    assert error["code"] == "worker_crashed" and error["detail"]["exit_code"] == 1
    assert server.predict(model_id, ["after exit"]).status_code == 200

    crashed = server.predict(model_id, ["segv"])
    assert crashed.status_code == 502, crashed.text
    assert crashed.json()["error"]["detail"]["signal"] == 11
    assert server.predict(model_id, ["after segv"]).status_code == 200
    assert _restarts(server, model_id, "crash", 2) == 2


def test_worker_output_goes_to_server_log_and_sees_no_easytensor_env(
    server: RunningServer, tiny_model: dict[str, Any]
) -> None:
    model_id = tiny_model["id"]
    assert server.predict(model_id, ["env"]).json()["predictions"] == [[]]
    assert server.predict(model_id, ["print"]).status_code == 200
    deadline = time.monotonic() + 5
    while f"[{model_id} v1] hello from the model" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    assert server.admin_key not in server.log().split("listening", 1)[1]


def test_concurrent_requests_reach_predict_batch(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    batching = Batching(max_batch_size=8, max_wait_ms=200)
    bundle = bundle_factory(
        name=unique_name, source=BATCH_SOURCE, class_name="Batcher", sample=1, batching=batching
    )
    model_id = server.upload(bundle).json()["id"]
    together = server.predict(model_id, [1, 2, 3])
    assert together.json()["predictions"] == [{"value": v, "batch": 3} for v in (1, 2, 3)]

    sizes: list[int] = []

    def one(value: int) -> None:
        sizes.append(server.predict(model_id, [value]).json()["predictions"][0]["batch"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sizes) == 6 and max(sizes) > 1, sizes


def test_idle_workers_are_unloaded(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    server = spawn_server("--idle-unload", "1")
    body = server.upload(bundle_factory(name="idle")).json()
    model_url = f"{server.url}/v1/models/{body['id']}"
    assert requests.get(model_url, headers=server.admin).json()["status"] == "ready"
    deadline = time.monotonic() + 15
    while requests.get(f"{server.url}/health").json()["workers"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert requests.get(model_url, headers=server.admin).json()["status"] == "idle"
    while server.worker_pids():
        assert time.monotonic() < deadline, "the standby worker should go with the last model"
        time.sleep(0.2)
    assert server.predict(body["id"], ["back"]).status_code == 200
    assert requests.get(f"{server.url}/health").json()["workers"] == 1
