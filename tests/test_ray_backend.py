"""The Ray backend end to end: a real two-node Ray cluster on loopback, a real PostgreSQL
registry, and a real ``easytensor serve --backend ray``, driven through the normal client.

The cluster and server are shared by the module (starting Ray costs about 20 s); each test
uploads its own model under a unique name.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from bundles import BATCH_SOURCE, Bundle, make_bundle
from postgres import create_database, drop_database
from raycluster import LOOPBACK_ENV, ray_cluster, replica_processes
from servers import RunningServer, start_server, wait_until

from easytensor_jupyter.bundle import Batching
from easytensor_jupyter.client import Client, EasyTensorError
from easytensor_jupyter.inference.backends.ray.backend import app_name

pytest.importorskip("ray.serve", reason="the Ray backend needs ray[serve]")

INPUTS: list[Any] = ["hello", [1.0, 2.0, 3.0, 4.0], {"a": 1}]
BROKEN_SOURCE = """
from torch import nn


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        raise RuntimeError("cannot build this one")

    def predict_single(self, x):
        return x
"""


@pytest.fixture(scope="module")
def ray_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("ray-home")
    db = create_database(postgres_url)
    try:
        with ray_cluster(nodes=2, cpus=2) as address:
            args = ["--backend", "ray", "--ray-address", address, "--db", db]
            running = start_server(
                home, *args, "--predict-timeout", "5", env=LOOPBACK_ENV, wait=180
            )
            try:
                yield running
            finally:
                running.stop()
    finally:
        drop_database(postgres_url, db)


@pytest.fixture
def ray_client(ray_server: RunningServer) -> Iterator[Client]:
    client = Client(ray_server.url, ray_server.admin_key, retries=6, backoff=0.5)
    yield client
    client.close()


def _bundle(tmp_path: Path, **kwargs: Any) -> Bundle:
    return make_bundle(
        tmp_path / uuid.uuid4().hex[:8], name=f"ray {uuid.uuid4().hex[:8]}", **kwargs
    )


def _replicas(bundle: Bundle) -> dict[int, int]:
    return replica_processes(f"ServeReplica:{app_name(bundle.manifest)}:")


def _running(client: Client, model_id: str) -> int:
    return int(client.get_model(model_id)["replicas_running"])


def test_same_answers_as_the_local_backend(
    ray_client: Client, server: RunningServer, tmp_path: Path
) -> None:
    bundle = _bundle(tmp_path, seed=7)
    on_ray = ray_client.upload_bundle(bundle.directory)
    local = Client(server.url, server.admin_key)
    on_local = local.upload_bundle(bundle.directory)
    try:
        ray_answer = ray_client.predict(on_ray.id, INPUTS).predictions
        local_answer = local.predict(on_local.id, INPUTS).predictions
        assert ray_answer == local_answer
        model = ray_client.get_model(on_ray.id)
        assert model["backend"] == "ray" and model["status"] == "ready"
        assert model["replicas_running"] == 1
        assert local.get_model(on_local.id)["backend"] == "local"
        with pytest.raises(EasyTensorError) as info:
            ray_client.predict(on_ray.id, ["raise"])
        assert info.value.status == 422 and "boom" in str(info.value)
    finally:
        local.delete_model(on_local.id)
        ray_client.delete_model(on_ray.id)


def test_two_replicas_on_two_nodes_and_a_killed_one_is_replaced(
    ray_client: Client, ray_server: RunningServer, tmp_path: Path
) -> None:
    bundle = _bundle(tmp_path)
    upload = ray_client.upload_bundle(bundle.directory)
    model_id = upload.id
    first = set(_replicas(bundle))
    try:
        scaled = ray_client.set_scaling(model_id, replicas=2)
        assert scaled["scaling"] == {"replicas": 2, "autoscaling": None}
        wait_until(lambda: _running(ray_client, model_id) == 2, 120, "2 running replicas")
        wait_until(lambda: len(_replicas(bundle)) == 2, 60, "2 replica processes")
        mine = _replicas(bundle)
        assert first <= set(mine), "scaling up replaced the running replica"
        assert len(set(mine.values())) == 2, "both replicas run on one node"

        answers: list[Any] = []
        failures: list[BaseException] = []
        raw_statuses: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def keep_querying() -> None:
            while not stop.is_set():
                try:
                    answers.append(ray_client.predict(model_id, ["hello"]).predictions[0])
                except BaseException as exc:
                    failures.append(exc)
                response = ray_server.predict(model_id, ["hello"])
                raw_statuses.append((response.status_code, response.headers.get("Retry-After")))

        thread = threading.Thread(target=keep_querying)
        thread.start()
        try:
            time.sleep(1.0)
            victim = sorted(mine)[0]
            os.kill(victim, signal.SIGKILL)

            def replaced() -> bool:
                fresh = set(_replicas(bundle))
                return victim not in fresh and len(fresh) == 2

            wait_until(replaced, 120, "Ray to replace the killed replica")
            wait_until(lambda: _running(ray_client, model_id) == 2, 60, "2 running replicas")
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(60)
        assert not failures, failures[:3]
        assert answers and all(a["text"] == "hello" for a in answers)
        assert {s for s, _ in raw_statuses} <= {200, 503}, raw_statuses
        assert all(after for status, after in raw_statuses if status == 503)
        now = set(_replicas(bundle))
        assert len(now) == 2 and victim not in now
    finally:
        ray_client.delete_model(model_id)


def test_autoscaling_through_the_api_and_cli_words(ray_client: Client, tmp_path: Path) -> None:
    upload = ray_client.upload_bundle(_bundle(tmp_path).directory)
    try:
        model = ray_client.set_scaling(
            upload.id, min_replicas=1, max_replicas=3, target_ongoing_requests=4
        )
        assert model["scaling"]["replicas"] is None
        assert model["scaling"]["autoscaling"] == {
            "min_replicas": 1,
            "max_replicas": 3,
            "target_ongoing_requests": 4.0,
        }
        assert ray_client.get_model(upload.id)["scaling"] == model["scaling"]
        assert ray_client.predict(upload.id, ["hi"]).predictions[0]["text"] == "hi"
        wait_until(lambda: _running(ray_client, upload.id) >= 1, 60, "a running replica")
        with pytest.raises(EasyTensorError) as info:
            ray_client.request(
                "PUT",
                f"/v1/models/{upload.id}/scaling",
                json={"autoscaling": {"min_replicas": 3, "max_replicas": 1}},
            )
        assert info.value.status == 422
    finally:
        ray_client.delete_model(upload.id)


def test_a_crashing_model_is_reported_like_local_and_restarted_in_place(
    ray_client: Client, ray_server: RunningServer, tmp_path: Path
) -> None:
    upload = ray_client.upload_bundle(_bundle(tmp_path).directory)
    try:
        started = time.monotonic()
        response = ray_server.predict(upload.id, ["exit"])
        assert time.monotonic() - started < 30
        assert response.status_code == 502, response.text
        assert response.json()["error"]["code"] == "worker_crashed"
        answer = ray_client.predict(upload.id, ["after"]).predictions[0]
        assert answer["text"] == "after"
        response = ray_server.predict(upload.id, ["hang"])
        assert response.status_code == 504, response.text
    finally:
        ray_client.delete_model(upload.id)


def test_batching_runs_through_ray_serve_batching(ray_client: Client, tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        source=BATCH_SOURCE,
        class_name="Batcher",
        sample=1,
        batching=Batching(max_batch_size=8, max_wait_ms=50),
    )
    upload = ray_client.upload_bundle(bundle.directory)
    try:
        results: list[Any] = []

        def one(i: int) -> None:
            results.append(ray_client.predict(upload.id, [i]).predictions[0])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(r["value"] for r in results) == list(range(8))
        assert max(r["batch"] for r in results) > 1
    finally:
        ray_client.delete_model(upload.id)


def test_a_model_that_fails_to_load_is_refused_and_leaves_nothing(
    ray_client: Client, tmp_path: Path
) -> None:
    broken = BROKEN_SOURCE
    bundle = make_bundle(
        tmp_path / "broken",
        name=f"ray broken {uuid.uuid4().hex[:8]}",
        source=broken,
        class_name="Broken",
        model=torch.nn.Linear(4, 2),
    )
    with pytest.raises(EasyTensorError) as info:
        ray_client.upload_bundle(bundle.directory)
    assert info.value.status == 422
    assert "cannot build this one" in str(info.value)
    assert not any(m["name"] == bundle.manifest.name for m in ray_client.list_models())
    wait_until(lambda: not _replicas(bundle), 60, "the failed deployment to go")


def test_deleting_a_model_removes_its_deployment(ray_client: Client, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    upload = ray_client.upload_bundle(bundle.directory)
    assert ray_client.predict(upload.id, ["x"]).predictions[0]["text"] == "x"
    assert _replicas(bundle)
    ray_client.delete_model(upload.id)
    wait_until(lambda: not _replicas(bundle), 60, "the replicas to stop")
