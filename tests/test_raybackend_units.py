"""The Ray backend's pure parts: the reply envelope and how scaling becomes Serve options."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from easytensor_jupyter.bundle import Batching, FileEntry, Manifest
from easytensor_jupyter.inference.backends.errors import (
    WorkerBusy,
    WorkerCrashed,
    WorkerError,
    WorkerInputError,
    WorkerLoadError,
    WorkerRestarted,
    WorkerTimeout,
)
from easytensor_jupyter.inference.backends.ray.backend import (
    RayOptions,
    app_name,
    probe_address,
    serve_options,
)
from easytensor_jupyter.inference.backends.ray.envelope import decode_reply, error_reply, ok_reply


def _manifest(name: str = "m", batching: Batching | None = None, **extra: Any) -> Manifest:
    files = {
        n: FileEntry(sha256=f"{i:064x}", size=1)
        for i, n in enumerate(["model.py", "weights.safetensors"])
    }
    return Manifest(name=name, class_name="Tiny", files=files, batching=batching, **extra)


def test_ok_reply_round_trips_bytes_and_json() -> None:
    results = [[True, {"a": 1}], [False, {"message": "boom", "code": "model_error"}]]
    assert decode_reply(ok_reply(results)) == results


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (WorkerTimeout("slow"), WorkerTimeout),
        (WorkerCrashed(-9), WorkerCrashed),
        (WorkerBusy("full"), WorkerBusy),
        (WorkerInputError("deep"), WorkerInputError),
        (WorkerRestarted("gone"), WorkerRestarted),
        (WorkerError("odd"), WorkerError),
    ],
)
def test_errors_come_back_as_the_local_exceptions(
    error: WorkerError, expected: type[WorkerError]
) -> None:
    with pytest.raises(expected) as info:
        decode_reply(error_reply(error))
    assert type(info.value) is expected
    assert str(info.value) == str(error)


def test_a_load_error_keeps_stage_and_detail() -> None:
    error = {"stage": "weights", "message": "missing key", "detail": {"key": "w"}}
    with pytest.raises(WorkerLoadError) as info:
        decode_reply(error_reply(error))
    assert info.value.error == error


def test_anything_but_bytes_is_refused() -> None:
    with pytest.raises(WorkerRestarted, match="not bytes"):
        decode_reply({"ok": []})
    assert msgpack.unpackb(ok_reply([]), raw=False) == {"ok": []}


def test_app_names_follow_name_and_content() -> None:
    a = _manifest("news")
    assert app_name(a) == app_name(_manifest("news"))
    assert app_name(a) != app_name(_manifest("other"))
    assert app_name(a) != app_name(_manifest("news", init_kwargs={"k": 1}))
    assert app_name(a).startswith("et-") and len(app_name(a)) <= 40


def test_fixed_and_autoscaling_options() -> None:
    options = RayOptions(replica={"device": "cpu"})
    fixed = serve_options(_manifest(), {"replicas": 3}, options)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 1.0}
    assert serve_options(_manifest(), None, options)["num_replicas"] == 1
    auto = serve_options(
        _manifest(),
        {"autoscaling": {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 2.0}},
        options,
    )
    assert auto["num_replicas"] == "auto"
    assert auto["autoscaling_config"] == {
        "min_replicas": 0,
        "max_replicas": 4,
        "initial_replicas": 1,
        "target_ongoing_requests": 2.0,
    }


def test_gpu_batching_and_spread_options() -> None:
    options = RayOptions(replica={"device": "cuda:0"}, max_replicas_per_node=1, replica_cpus=2)
    out = serve_options(_manifest(batching=Batching(max_batch_size=64)), None, options)
    assert out["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 1}
    assert out["max_replicas_per_node"] == 1
    assert out["max_ongoing_requests"] == 128


def test_an_unreachable_cluster_stops_the_server_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "easytensor_jupyter.cli", "serve", "--port", "0"]
    command += ["--backend", "ray", "--ray-address", f"127.0.0.1:{port}"]
    env = {**os.environ, "EASYTENSOR_HOME": str(tmp_path)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"cannot use the Ray cluster at 127.0.0.1:{port}: nothing answers at "
        f"127.0.0.1:{port} (Connection refused); start the cluster with `ray start --head`, "
        "or check --ray-address"
    ]


def test_a_malformed_address_is_named() -> None:
    with pytest.raises(ValueError, match="not HOST:PORT"):
        probe_address("head-node")
