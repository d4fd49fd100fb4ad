"""The Ray backend end to end: a real two-node Ray cluster on loopback (the second node declares
a GPU and an ``accel`` resource; Ray takes them at their word), a real PostgreSQL registry, and a
real ``easytensor serve --backend ray``, driven through the normal client and CLI.

The cluster and server are shared by the module (starting Ray costs 20-40 s); each test
uploads its own model under a unique name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from bundles import BATCH_SOURCE, Bundle, make_bundle
from postgres import create_database, drop_database
from raycluster import LOOPBACK_ENV, LocalCluster, ray_cluster, replica_processes
from servers import RunningServer, start_server, wait_until
from stream_models import TALKER_SOURCE

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
ACCEL_NODE = {"num_gpus": 1, "resources": {"accel": 1}}


@dataclass
class Rig:
    server: RunningServer
    cluster: LocalCluster
    db: str
    key: str


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Rig]:
    home = tmp_path_factory.mktemp("ray-home")
    db = create_database(postgres_url)
    key = f"ray-admin-{uuid.uuid4().hex}"
    try:
        with ray_cluster(nodes=2, cpus=2, extra=[{}, ACCEL_NODE]) as cluster:
            args = ["--backend", "ray", "--ray-address", cluster.address, "--db", db]
            env = {**LOOPBACK_ENV, "EASYTENSOR_API_KEY": key}
            running = start_server(home, *args, "--predict-timeout", "5", env=env, wait=180)
            try:
                yield Rig(running, cluster, db, key)
            finally:
                running.stop()
    finally:
        drop_database(postgres_url, db)


@pytest.fixture
def ray_server(rig: Rig) -> RunningServer:
    return rig.server


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


def _listed(client: Client, model_id: str) -> list[dict[str, Any]]:
    replicas: list[dict[str, Any]] = client.get_model(model_id)["replicas"]
    return replicas


def _direct(client: Client, model_id: str) -> int:
    """Replicas this control plane sends queries to directly, not through Serve's handle."""
    return sum(1 for r in _listed(client, model_id) if r["direct"])


def _wait_direct(client: Client, model_id: str, replicas: int = 1) -> None:
    def linked() -> bool:
        client.predict(model_id, ["warm"])
        return _direct(client, model_id) >= replicas

    wait_until(linked, 30, "the control plane to reach the replicas directly")


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
        _wait_direct(ray_client, on_ray.id)
        assert ray_client.predict(on_ray.id, INPUTS).predictions == local_answer
        model = ray_client.get_model(on_ray.id)
        assert model["backend"] == "ray" and model["status"] == "ready"
        assert model["replicas_running"] == 1
        with pytest.raises(EasyTensorError) as info:
            ray_client.predict(on_ray.id, ["raise"])
        assert info.value.status == 422 and "boom" in str(info.value)
        (listed,) = _listed(ray_client, on_ray.id)
        assert listed["state"] == "running" and listed["device"] == "cpu"
        assert listed["pid"] in _replicas(bundle) and listed["started_at"]
        wait_until(lambda: (_listed(ray_client, on_ray.id)[0]["requests"] or 0) >= 4, 15, "counts")
        local_model = local.get_model(on_local.id)
        assert local_model["backend"] == "local"
        (worker,) = local_model["replicas"]
        assert worker["state"] == "running" and worker["requests"] == 1
        assert worker["id"] == f"worker-{worker['pid']}"
        with pytest.raises(EasyTensorError) as refused:
            local.set_scaling(on_local.id, num_gpus=1)
        assert refused.value.status == 422 and refused.value.code == "scaling_unsupported"
        assert "num_gpus per replica need the Ray backend" in str(refused.value)
    finally:
        local.delete_model(on_local.id)
        ray_client.delete_model(on_ray.id)


def _leftovers(pid: int) -> list[Path]:
    temp = Path(tempfile.gettempdir())
    return [*temp.glob(f"easytensor-replica-{pid}-*"), *temp.glob(f"easytensor-worker-{pid}-*")]


def test_replicas_spread_over_nodes_are_listed_and_a_killed_one_is_replaced_and_swept(
    ray_client: Client, ray_server: RunningServer, rig: Rig, tmp_path: Path
) -> None:
    other = ray_client.upload_bundle(_bundle(tmp_path).directory)  # Ray's own spread alternates
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
        assert sorted(mine.values()) == sorted(rig.cluster.raylet_pids), "not one per node"
        listed = _listed(ray_client, model_id)
        assert {r["node"] for r in listed} == set(rig.cluster.node_ids)
        assert {r["pid"] for r in listed} == set(mine)
        shown = subprocess.run(
            [sys.executable, "-m", "easytensor_jupyter.cli", "models", "show", model_id],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "EASYTENSOR_URL": ray_server.url, "EASYTENSOR_API_KEY": rig.key},
        )
        assert shown.returncode == 0, shown.stderr
        for row in listed:
            assert f"  {row['id']}" in shown.stdout and row["node"][:12] in shown.stdout
        _wait_direct(ray_client, model_id, 2)

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
            assert _leftovers(victim), "the replica's folders are not where they should be"
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
        now = _replicas(bundle)
        assert len(now) == 2 and victim not in now
        assert sorted(now.values()) == sorted(rig.cluster.raylet_pids)
        assert not _leftovers(victim), "the new replica left the killed one's folders"
    finally:
        ray_client.delete_model(model_id)
        ray_client.delete_model(other.id)


def test_resources_place_replicas_on_the_node_that_has_them(
    ray_client: Client, rig: Rig, tmp_path: Path
) -> None:
    bundle = _bundle(tmp_path)
    upload = ray_client.upload_bundle(bundle.directory)
    accel_node, accel_raylet = rig.cluster.node_ids[1], rig.cluster.raylet_pids[1]
    try:
        model = ray_client.set_scaling(upload.id, resources={"accel": 1})
        assert model["scaling"] == {"replicas": 1, "autoscaling": None, "resources": {"accel": 1}}

        def on_accel(device: str, state: str = "running") -> bool:
            rows = _listed(ray_client, upload.id)
            return [(r["node"], r["state"], r["device"]) for r in rows] == [
                (accel_node, state, device)
            ]

        wait_until(lambda: on_accel("cpu"), 120, "the replica on the accel node")
        assert list(_replicas(bundle).values()) == [accel_raylet]
        assert ray_client.predict(upload.id, ["x"]).predictions[0]["text"] == "x"

        with pytest.raises(EasyTensorError) as none_fits:
            ray_client.set_scaling(upload.id, resources={"tpu": 1})
        assert none_fits.value.status == 422 and none_fits.value.code == "no_matching_node"
        assert "no node of the Ray cluster offers CPU=1, tpu=1" in str(none_fits.value)
        assert ray_client.get_model(upload.id)["scaling"]["resources"] == {"accel": 1}

        # The GPU is Ray's bookkeeping only: the worker is told cuda, which torch here lacks.
        model = ray_client.set_scaling(upload.id, num_gpus=1)
        assert model["scaling"]["num_gpus"] == 1 and model["scaling"]["resources"]
        wait_until(lambda: on_accel("cuda", "failed"), 120, "a cuda replica on the GPU node")
        with pytest.raises(EasyTensorError) as no_cuda:
            ray_client.predict(upload.id, ["x"])
        assert no_cuda.value.code == "load_error" and "cuda" in str(no_cuda.value).lower()
    finally:
        ray_client.delete_model(upload.id)


def test_a_second_control_plane_shares_models_through_the_handle(
    ray_client: Client, rig: Rig, tmp_path: Path
) -> None:
    bundle = _bundle(tmp_path)
    upload = ray_client.upload_bundle(bundle.directory)
    args = ["--backend", "ray", "--ray-address", rig.cluster.address, "--db", rig.db]
    env = {**LOOPBACK_ENV, "EASYTENSOR_API_KEY": rig.key}
    second = start_server(
        tmp_path / "second", *args, "--ray-route", "handle", env=env, store=rig.server.store
    )
    try:
        other = Client(second.url, rig.key, retries=6, backoff=0.5)
        token = upload.query_token
        assert other.predict(upload.id, INPUTS, token=token).predictions == (
            ray_client.predict(upload.id, INPUTS, token=token).predictions
        )
        wait_until(lambda: len(_listed(other, upload.id)) == 1, 30, "the replica listed")
        time.sleep(1.5)
        assert other.predict(upload.id, ["x"], token=token).predictions[0]["text"] == "x"
        wait_until(lambda: _direct(ray_client, upload.id) == 1, 15, "the first one direct")
        assert _direct(other, upload.id) == 0
        assert _listed(other, upload.id)[0]["id"] == _listed(ray_client, upload.id)[0]["id"]
        other.delete_model(upload.id)
        wait_until(lambda: not _replicas(bundle), 60, "the replicas to stop")
        with pytest.raises(EasyTensorError) as gone:
            ray_client.predict(upload.id, ["x"])
        assert gone.value.status == 404
    finally:
        second.stop()


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
    bundle = _bundle(tmp_path)
    upload = ray_client.upload_bundle(bundle.directory)
    try:
        _wait_direct(ray_client, upload.id)
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
        _wait_direct(ray_client, upload.id)
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
    bundle = make_bundle(
        tmp_path / "broken",
        name=f"ray broken {uuid.uuid4().hex[:8]}",
        source=BROKEN_SOURCE,
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


def test_a_stream_runs_through_ray_serve_and_stops_when_the_client_leaves(
    ray_client: Client, ray_server: RunningServer, tmp_path: Path
) -> None:
    bundle = _bundle(tmp_path, source=TALKER_SOURCE, class_name="Talker")
    upload = ray_client.upload_bundle(bundle.directory)
    try:
        stream = ray_client.stream(upload.id, "ray!")
        assert list(stream) == list("ray!")
        assert stream.info is not None and stream.info["version"] == 1
        with pytest.raises(EasyTensorError) as failed:
            list(ray_client.stream(upload.id, "boom"))
        assert failed.value.code == "model_error" and "boom" in str(failed.value)
        leaving = ray_client.stream(upload.id, "forever")
        assert [next(leaving) for _ in range(3)] == ["tick"] * 3
        leaving.close()

        def closed() -> bool:
            return ray_client.predict(upload.id, ["?"]).predictions[0]["closed"] == 1

        wait_until(closed, 30, "the replica's worker to close the generator")
    finally:
        ray_client.delete_model(upload.id)


def test_canary_shadow_and_request_log_route_above_ray(
    ray_client: Client, ray_server: RunningServer, tmp_path: Path
) -> None:
    """Routing, shadows and the log live above the backend: on Ray (and a PostgreSQL
    registry) a split names the serving version in each answer and the log keeps both."""
    from easytensor_jupyter import traffic

    name = f"ray traffic {uuid.uuid4().hex[:8]}"
    first = ray_client.upload_bundle(
        make_bundle(tmp_path / "a", name=name, init_kwargs={"tag": "a"}).directory
    )
    ray_client.upload_bundle(
        make_bundle(tmp_path / "b", name=name, init_kwargs={"tag": "b"}).directory,
        candidate=True,
    )
    model_id = first.id
    try:
        assert ray_client.get_model(model_id)["default_version"] == 1
        traffic.set_log_settings(ray_client, model_id, "all")
        traffic.set_traffic(ray_client, model_id, split={"1": 50, "2": 50}, shadow=2)
        seen = set()
        for _ in range(40):
            answer = ray_client.request(
                "POST", f"/v1/models/{model_id}/predict", json={"instances": ["x"]}
            )
            version = answer.headers["X-EasyTensor-Version"]
            assert answer.json()["predictions"][0]["tag"] == {"1": "a", "2": "b"}[version]
            seen.add(version)
        assert seen == {"1", "2"}
        records = traffic.fetch_requests(ray_client, model_id, limit=100)["records"]
        assert len(records) == 40 and {r["version"] for r in records} == {1, 2}
        wait_until(
            lambda: bool(traffic.fetch_requests(ray_client, model_id, kind="shadow")["records"]),
            60,
            "a shadow answer from the Ray replica",
        )
        shadow = traffic.fetch_requests(ray_client, model_id, kind="shadow")["records"][0]
        assert shadow["version"] == 2 and shadow["agrees"] is False
        compared = traffic.run_compare(ray_client, model_id, 1, 2, ["p", "q"])
        assert compared["cases"] == 2 and compared["agree"] == 0
    finally:
        ray_client.delete_model(model_id)
