"""Spare workers on a real server: each load takes one that has imported torch already, a
replacement starts, and ``--standby`` sets how many wait."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import requests
from bundles import Bundle
from servers import RunningServer, wait_until


def _replica_pids(server: RunningServer, model_id: str) -> set[int]:
    model = requests.get(f"{server.url}/v1/models/{model_id}", headers=server.admin, timeout=30)
    return {r["pid"] for r in model.json()["replicas"]}


def test_two_deploys_in_a_row_each_take_a_spare_and_both_are_replaced(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    server = spawn_server("--standby", "2")
    wait_until(lambda: len(server.worker_pids()) == 2, 90, "two spare workers")
    spares = set(server.worker_pids())
    first = server.upload(bundle_factory(name="spare one")).json()
    second = server.upload(bundle_factory(name="spare two", seed=1)).json()
    loaded = _replica_pids(server, first["id"]) | _replica_pids(server, second["id"])
    assert len(loaded) == 2 and loaded <= spares, (loaded, spares)
    wait_until(lambda: len(server.worker_pids()) == 4, 90, "two models and two new spares")
    assert server.predict(second["id"], ["hi"]).status_code == 200


def test_no_spare_with_standby_zero_and_a_clear_refusal_past_eight(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    server = spawn_server("--standby", "0")
    model = server.upload(bundle_factory(name="no spare")).json()
    assert len(server.worker_pids()) == 1
    assert _replica_pids(server, model["id"]) == set(server.worker_pids())
    refused = subprocess.run(
        [sys.executable, "-m", "easytensor_jupyter.cli", "serve", "--standby", "9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "--standby: must be 0 to 8, not 9" in refused.stderr
