"""The Ray backend's parts that need no cluster: the reply envelope, how scaling becomes Serve
options and placement, the replica listing, the leftover sweep, and the direct path (the
router and a replica's door talking over real loopback sockets)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from pydantic import ValidationError

from easytensor_jupyter.bundle import Batching, FileEntry, Manifest
from easytensor_jupyter.cli.models import _resources, describe_replicas, describe_scaling
from easytensor_jupyter.inference.api.schemas import ScalingIn
from easytensor_jupyter.inference.backends.errors import (
    WorkerBusy,
    WorkerCrashed,
    WorkerError,
    WorkerInputError,
    WorkerLoadError,
    WorkerRestarted,
    WorkerTimeout,
)
from easytensor_jupyter.inference.backends.ray.backend import app_name, probe_address
from easytensor_jupyter.inference.backends.ray.door import Door
from easytensor_jupyter.inference.backends.ray.envelope import decode_reply, error_reply, ok_reply
from easytensor_jupyter.inference.backends.ray.leftovers import sweep_replica_dirs
from easytensor_jupyter.inference.backends.ray.listing import join
from easytensor_jupyter.inference.backends.ray.placement import (
    count_fitting,
    per_node_cap,
    replica_device,
    replica_needs,
    serve_options,
    unsatisfiable,
)
from easytensor_jupyter.inference.backends.ray.router import DirectRouter
from easytensor_jupyter.inference.backends.ray.wire import frame


def _manifest(name: str = "m", batching: Batching | None = None, **extra: Any) -> Manifest:
    files = {
        n: FileEntry(sha256=f"{i:064x}", size=1)
        for i, n in enumerate(["model.py", "weights.safetensors"])
    }
    return Manifest(name=name, class_name="Tiny", files=files, batching=batching, **extra)


def _node(alive: bool = True, **resources: float) -> dict[str, Any]:
    return {"Alive": alive, "Resources": {"CPU": 2.0, "memory": 1e9, **resources}}


# -- the envelope ---------------------------------------------------------------------------


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


# -- scaling, resources and placement ---------------------------------------------------------


def test_fixed_and_autoscaling_options() -> None:
    fixed = serve_options(_manifest(), {"replicas": 3}, replica_cpus=1.0, device="cpu")
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 1.0}
    assert "max_replicas_per_node" not in fixed
    plain = serve_options(_manifest(), None, replica_cpus=1.0, device="cpu")
    assert plain["num_replicas"] == 1
    auto = serve_options(
        _manifest(),
        {"autoscaling": {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 2.0}},
        replica_cpus=1.0,
        device="cpu",
        fitting=2,
    )
    assert auto["num_replicas"] == "auto"
    assert auto["autoscaling_config"] == {
        "min_replicas": 0,
        "max_replicas": 4,
        "initial_replicas": 1,
        "target_ongoing_requests": 2.0,
    }
    assert auto["max_replicas_per_node"] == 2


def test_gpu_batching_and_an_explicit_cap() -> None:
    out = serve_options(
        _manifest(batching=Batching(max_batch_size=64)),
        None,
        replica_cpus=2,
        device="cuda:0",
        max_replicas_per_node=1,
        placement="pack",
    )
    assert out["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 1}
    assert out["max_replicas_per_node"] == 1
    assert out["max_ongoing_requests"] == 128


@pytest.mark.parametrize(
    ("count", "fitting", "placement", "explicit", "cap"),
    [
        (1, 2, "spread", None, 1),  # the cap a later scale to 2 keeps: no restart
        (2, 2, "spread", None, 1),
        (3, 2, "spread", None, 2),
        (5, 3, "spread", None, 2),
        (4, 1, "spread", None, None),  # one node: nothing to spread over
        (2, 2, "pack", None, None),
        (2, 2, "pack", 1, 1),
        (3, 2, "spread", 3, 3),
    ],
)
def test_spread_caps_replicas_per_node(
    count: int, fitting: int, placement: Any, explicit: int | None, cap: int | None
) -> None:
    assert per_node_cap(count, fitting, placement, explicit) == cap


def test_the_models_own_needs_and_the_device_they_give_the_worker() -> None:
    assert replica_needs(None, 1.0, "cpu") == {"num_cpus": 1.0}
    assert replica_needs(None, 1.0, "cuda") == {"num_cpus": 1.0, "num_gpus": 1}
    scaling = {"replicas": 2, "num_cpus": 0.5, "num_gpus": 1, "resources": {"accel": 1.0}}
    assert replica_needs(scaling, 1.0, "cpu") == {
        "num_cpus": 0.5,
        "num_gpus": 1,
        "resources": {"accel": 1.0},
    }
    assert replica_needs({"num_gpus": 0}, 1.0, "cuda") == {"num_cpus": 1.0}
    assert replica_device(None, "cpu") == "cpu"
    assert replica_device({"num_gpus": 0.5}, "cpu") == "cuda"
    assert replica_device({"num_gpus": 1}, "cuda:1") == "cuda:1"
    assert replica_device({"num_gpus": 0}, "cuda") == "cpu"
    assert replica_device({"resources": {"accel": 1}}, "cpu") == "cpu"


def test_only_nodes_with_room_for_one_replica_count() -> None:
    nodes = [_node(), _node(accel=1.0, GPU=1.0), _node(alive=False, accel=4.0)]
    assert count_fitting(nodes, {"num_cpus": 1.0}) == 2
    assert count_fitting(nodes, {"num_cpus": 1.0, "resources": {"accel": 1}}) == 1
    assert count_fitting(nodes, {"num_cpus": 3.0}) == 0
    assert unsatisfiable(nodes, {"num_cpus": 1.0, "num_gpus": 1}) is None
    message = unsatisfiable(nodes, {"num_cpus": 1.0, "resources": {"tpu": 1}})
    assert message is not None
    assert message.startswith("no node of the Ray cluster offers CPU=1, tpu=1 per replica")
    assert "2 live node(s) offer: CPU=2 | CPU=2, GPU=1" in message
    assert "ray start --num-gpus 1" in message


def test_a_scaling_body_keeps_what_it_does_not_name() -> None:
    stored = {"replicas": 2, "num_gpus": 1.0, "resources": {"accel": 1.0}}
    assert ScalingIn.model_validate({"replicas": 3}).merged_into(stored) == {
        **stored,
        "replicas": 3,
    }
    assert ScalingIn.model_validate({"num_cpus": 2}).merged_into(None) == {
        "replicas": 1,
        "num_cpus": 2.0,
    }
    auto = ScalingIn.model_validate({"autoscaling": {"max_replicas": 3}, "num_gpus": None})
    assert auto.merged_into(stored) == {
        "resources": {"accel": 1.0},
        "autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2.0},
    }
    assert ScalingIn.model_validate({"resources": {}}).merged_into(stored) == {
        "replicas": 2,
        "num_gpus": 1.0,
    }
    shown = ScalingIn.model_validate({"replicas": 2}).model_dump(mode="json")
    assert shown == {"replicas": 2, "autoscaling": None}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "give replicas or autoscaling, or what each replica needs"),
        ({"replicas": None}, "give replicas or autoscaling, or what each replica needs"),
        ({"replicas": 2, "autoscaling": {"max_replicas": 2}}, "not both"),
        ({"resources": {"GPU": 1}}, "'GPU' is not a custom resource; use num_gpus"),
        ({"resources": {"memory": 1}}, "'memory' is not a custom resource; Ray sets it"),
        ({"resources": {"two words": 1}}, "should match pattern"),
        ({"num_gpus": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_scaling_bodies_say_what_is_wrong(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScalingIn.model_validate(body)


def test_cli_resources_and_replica_lines() -> None:
    assert _resources('{"accel": 1, "tpu": 0.5}') == {"accel": 1.0, "tpu": 0.5}
    for bad in ("accel=1", '["accel"]', '{"accel": "one"}', '{"accel": true}'):
        with pytest.raises(Exception, match="JSON"):
            _resources(bad)
    model = {
        "scaling": {"replicas": 2, "autoscaling": None, "num_gpus": 1, "resources": {"a": 1}},
        "replicas_running": 1,
        "replicas": [
            {
                "id": "r6cvwlt1",
                "state": "running",
                "node": "5e47d800bf9a97aeded4286bc333",
                "node_ip": "127.0.0.1",
                "started_at": "2026-01-01T10:00:00+00:00",
                "requests": 1,
                "device": "cuda",
            },
            {"id": "65jmvkxd", "state": "pending", "node": "", "requests": None},
        ],
    }
    assert describe_scaling(model) == "2 replicas (fixed), each needs 1 GPU + a=1, 1 running"
    assert describe_replicas(model) == [
        "  r6cvwlt1       running  node 5e47d800bf9a (127.0.0.1)  "
        "since 2026-01-01T10:00:00+00:00  1 request  cuda",
        "  65jmvkxd       pending  node ?",
    ]


# -- what Serve and the directory say, joined -------------------------------------------------


def test_the_listing_joins_serve_and_the_directory() -> None:
    details = {
        "applications": {
            "et-a": {
                "deployments": {
                    "model": {
                        "replicas": [
                            {
                                "replica_id": "r1",
                                "state": "RUNNING",
                                "node_id": "n1",
                                "node_ip": "127.0.0.1",
                                "pid": 11,
                                "start_time_s": 1_800_000_000.0,
                            },
                            {"replica_id": "r2", "state": "STARTING", "start_time_s": 0},
                            {"replica_id": "r3", "state": "RUNNING", "node_id": "n2"},
                            {"replica_id": "r4", "state": "STOPPING", "node_id": "n2"},
                        ]
                    }
                }
            }
        }
    }
    door = {"host": "127.0.0.1", "port": 5, "token": "t", "state": "running"}
    entries = {
        "et-a": {
            "r1": {**door, "served": 7, "device": "cpu"},
            "r3": {"state": "failed", "served": 0, "device": "cuda", "port": None},
            "r4": {**door, "served": 2},
        }
    }
    view = join(details, entries)
    rows = {r["id"]: r for r in view.replicas["et-a"]}
    assert rows["r1"] == {
        "id": "r1",
        "node": "n1",
        "node_ip": "127.0.0.1",
        "state": "running",
        "started_at": "2027-01-15T08:00:00+00:00",
        "requests": 7,
        "device": "cpu",
        "pid": 11,
    }
    assert [rows[r]["state"] for r in ("r2", "r3", "r4")] == ["pending", "failed", "stopping"]
    assert rows["r2"]["requests"] is None and rows["r3"]["device"] == "cuda"
    assert view.counts == {"et-a": 2}
    assert list(view.routes["et-a"]) == ["r1"]


# -- leftovers ------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_folders_of_dead_replicas_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / f"easytensor-replica-{_dead_pid()}-abc"
    alive = tmp_path / f"easytensor-replica-{os.getppid()}-def"
    mine = tmp_path / f"easytensor-replica-{os.getpid()}-ghi"
    old_style = tmp_path / "easytensor-replica-k2j4h5"
    for folder in (dead, alive, mine, old_style):
        (folder / "sub").mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / f"easytensor-replica-{_dead_pid()}-lnk"
    link.symlink_to(target)
    assert sweep_replica_dirs(tmp_path) == [dead]
    assert not dead.exists()
    assert alive.is_dir() and mine.is_dir() and old_style.is_dir() and target.is_dir()
    assert link.is_symlink()


# -- the direct path ---------------------------------------------------------------------------


def _echo(
    delay: float = 0.0, seen: list[Any] | None = None
) -> Callable[[list[Any]], Awaitable[bytes]]:
    async def handler(instances: list[Any]) -> bytes:
        if seen is not None:
            seen.append(instances)
        if instances == ["crash"]:
            raise RuntimeError("a bug in the replica")
        if instances == ["slow"]:
            await asyncio.sleep(5)
        await asyncio.sleep(delay)
        return ok_reply([[True, x] for x in instances])

    return handler


async def _door(handler: Callable[[list[Any]], Awaitable[bytes]]) -> tuple[Door, dict[str, Any]]:
    door = Door(handler)
    port = await door.open("127.0.0.1")
    return door, {"host": "127.0.0.1", "port": port, "token": door.token}


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_the_router_answers_through_a_door_and_shares_the_load() -> None:
    async def scenario() -> None:
        router = DirectRouter()
        on_a: list[Any] = []
        on_b: list[Any] = []
        a, entry_a = await _door(_echo(0.05, on_a))
        b, entry_b = await _door(_echo(0.05, on_b))
        assert await router.call("app", ["x"], 5, 5) is None  # nothing known yet
        router.update({"app": {"ra": entry_a, "rb": entry_b}})
        await _until(lambda: router.open_links("app") == 2)
        replies = await asyncio.gather(*(router.call("app", [i], 5, 5) for i in range(8)))
        assert [decode_reply(r) for r in replies if r] == [[[True, i]] for i in range(8)]
        assert len(on_a) == len(on_b) == 4  # the least busy first: half each
        crashed = await router.call("app", ["crash"], 5, 5)
        assert crashed is not None
        with pytest.raises(WorkerError, match="the replica failed: RuntimeError"):
            decode_reply(crashed)
        with pytest.raises(WorkerTimeout, match=r"took longer than 0\.1 s"):
            await router.call("app", ["slow"], 0.2, 0.1)
        router.update({})
        assert await router.call("app", ["x"], 5, 5) is None
        a.close()
        b.close()
        await router.close()

    asyncio.run(scenario())


def test_a_replica_that_dies_fails_its_requests_with_restarted_and_is_not_dialled_again() -> None:
    async def scenario() -> None:
        router = DirectRouter()
        door, entry = await _door(_echo())
        router.update({"app": {"r1": entry}})
        await _until(lambda: router.open_links("app") == 1)
        pending = asyncio.ensure_future(router.call("app", ["slow"], 10, 10))
        await asyncio.sleep(0.1)
        door.close()  # what a replica does as it stops: a drain frame, then the socket closes
        with pytest.raises(WorkerRestarted, match="the replica serving this request died"):
            await pending
        router.update({"app": {"r1": entry}})  # Serve still lists it for a moment
        await asyncio.sleep(0.2)
        assert router.open_links("app") == 0
        assert await router.call("app", ["x"], 5, 5) is None
        await router.close()

    asyncio.run(scenario())


def test_a_door_drops_a_peer_without_the_secret() -> None:
    async def scenario() -> None:
        door, entry = await _door(_echo())
        router = DirectRouter()
        router.update({"app": {"r1": {**entry, "token": "wrong"}}})
        await asyncio.sleep(0.3)
        assert router.open_links("app") == 0
        reader, writer = await asyncio.open_connection("127.0.0.1", entry["port"])
        writer.write(frame({"token": "x" * 2000}))  # over the 1 KiB limit for a first frame
        assert await reader.read() == b""
        writer.close()
        door.close()
        await router.close()

    asyncio.run(scenario())


# -- start-up errors -----------------------------------------------------------------------


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


def test_pins_the_node_lacks_go_to_the_replicas_runtime_env() -> None:
    manifest = _manifest().model_copy(
        update={"requirements": ["etdemo-absent==1.0", "torch==0.1", f"numpy=={np.__version__}"]}
    )
    out = serve_options(manifest, None, replica_cpus=1.0, device="cpu")
    assert out["ray_actor_options"]["runtime_env"] == {
        "pip": {"packages": ["etdemo-absent==1.0"], "pip_check": False}
    }
    assert (
        "runtime_env"
        not in serve_options(_manifest(), None, replica_cpus=1.0, device="cpu")["ray_actor_options"]
    )
