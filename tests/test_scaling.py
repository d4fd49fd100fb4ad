"""Per-model scaling on the local backend, through the real server, client and CLI:
a fixed count means that many worker processes for the model's versions; autoscaling is
refused with a clear error, since only the Ray backend has an autoscaler."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from bundles import Bundle
from servers import RunningServer, wait_until

from easytensor_jupyter.client import Client, EasyTensorError


def test_fixed_replicas_start_that_many_workers_and_persist(
    spawn_server: Callable[..., RunningServer],
    bundle_factory: Callable[..., Bundle],
    unique_name: str,
) -> None:
    running = spawn_server()
    client = Client(running.url, running.admin_key)
    upload = client.upload_bundle(bundle_factory(name=unique_name).directory)
    model = client.get_model(upload.id)
    assert model["scaling"] == {"replicas": 1, "autoscaling": None}
    assert model["backend"] == "local" and model["replicas_running"] == 1

    scaled = client.set_scaling(upload.id, replicas=3)
    assert scaled["scaling"] == {"replicas": 3, "autoscaling": None}

    def grown() -> bool:
        client.predict(upload.id, ["x"])
        return client.get_model(upload.id)["replicas_running"] == 3

    wait_until(grown, 60, "3 workers")
    assert len(running.worker_pids()) >= 3

    client.set_scaling(upload.id, replicas=1)
    assert client.get_model(upload.id)["replicas_running"] == 1
    assert client.predict(upload.id, ["y"]).predictions[0]["text"] == "y"

    running.stop()
    again = spawn_server(home=running.home)
    restarted = Client(again.url, again.admin_key)
    assert restarted.get_model(upload.id)["scaling"] == {"replicas": 1, "autoscaling": None}


def test_autoscaling_and_bad_bodies_are_refused(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    client = Client(server.url, server.admin_key)
    upload = client.upload_bundle(bundle_factory(name=unique_name).directory)
    try:
        with pytest.raises(EasyTensorError) as info:
            client.set_scaling(upload.id, min_replicas=1, max_replicas=3)
        assert info.value.status == 422 and info.value.code == "scaling_unsupported"
        assert "--backend ray" in str(info.value)
        for body in ({}, {"replicas": 0}, {"replicas": 2, "autoscaling": {"max_replicas": 2}}):
            with pytest.raises(EasyTensorError) as bad:
                client.request("PUT", f"/v1/models/{upload.id}/scaling", json=body)
            assert bad.value.status == 422, body
        assert client.get_model(upload.id)["scaling"] == {"replicas": 1, "autoscaling": None}
        with pytest.raises(EasyTensorError) as missing:
            client.set_scaling("no-such-model", replicas=2)
        assert missing.value.status == 404
    finally:
        client.delete_model(upload.id)


def test_cli_scale_prints_one_line(
    server: RunningServer, bundle_factory: Callable[..., Bundle], unique_name: str
) -> None:
    client = Client(server.url, server.admin_key)
    upload = client.upload_bundle(bundle_factory(name=unique_name).directory)
    try:
        command = [sys.executable, "-m", "easytensor_jupyter.cli", "models", "scale"]
        command += [unique_name, "--replicas", "2", "--url", server.url]
        command += ["--api-key", server.admin_key]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().startswith(f"{upload.id}: 2 replicas (fixed)")
        assert done.stdout.strip().endswith("backend local")
    finally:
        client.delete_model(upload.id)
