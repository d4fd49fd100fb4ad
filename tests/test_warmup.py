"""Default versions load when the server starts; an unchanged upload warms its version."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import requests
from bundles import Bundle
from servers import RunningServer, wait_until


def _status(server: RunningServer, model_id: str) -> str:
    response = requests.get(f"{server.url}/v1/models/{model_id}", headers=server.admin, timeout=30)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def test_restart_warms_defaults_newest_first_and_unchanged_upload_warms(
    spawn_server: Callable[..., RunningServer],
    bundle_factory: Callable[..., Bundle],
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    first = spawn_server(home=home)
    bundles = [bundle_factory(name=name) for name in ("older", "newer")]
    ids = []
    for bundle in bundles:
        response = first.upload(bundle)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
        time.sleep(1.1)  # versions' creation times are kept to the second
    first.stop()

    warm = spawn_server(home=home)
    wait_until(lambda: all(_status(warm, i) == "ready" for i in ids), 90, "both models warm")
    started = time.perf_counter()
    answer = warm.predict(ids[0], ["hello"])
    assert answer.status_code == 200, answer.text
    assert time.perf_counter() - started < 5, "the first query must find the worker warm"
    warm.stop()

    one = spawn_server("--warm-start", "1", home=home)
    wait_until(lambda: _status(one, ids[1]) == "ready", 90, "the newest model warm")
    assert _status(one, ids[0]) == "idle", "only the newest deployment is loaded at start"
    one.stop()

    cold = spawn_server("--warm-start", "0", home=home)
    time.sleep(1.0)
    assert [_status(cold, i) for i in ids] == ["idle", "idle"]
    again = cold.upload(bundles[0])
    assert again.status_code == 200 and again.json()["unchanged"], again.text
    wait_until(lambda: _status(cold, ids[0]) == "ready", 90, "the unchanged version warm")
    assert _status(cold, ids[1]) == "idle"
