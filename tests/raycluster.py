"""A real two-node Ray cluster on this machine for the Ray backend's tests.

Both nodes and every driver stay on loopback. On Linux Ray asks the routing table which
address reaches the outside world and advertises that one, unless its "clusters" switch is off
(what macOS and Windows get by default). Ray reads that switch once, when it is first
imported, so this module flips it at import (and in Ray's constants, should Ray already be
imported): the GCS, the raylets and the drivers then all use 127.0.0.1.

The raylet gives its dashboard agent 15 s to report its ports, and aborts otherwise; on a
busy machine the agent's first start can miss that, so a failed start is tried again.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = ["LOOPBACK_ENV", "LocalCluster", "ray_cluster", "replica_processes"]

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _loopback() -> None:
    os.environ.update(LOOPBACK_ENV)
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]


_loopback()


@dataclass(frozen=True)
class LocalCluster:
    address: str
    node_ids: list[str]
    """Ray's id of node ``i`` (the head first), as ``GET /v1/models/{id}`` names nodes."""
    raylet_pids: list[int]
    """The raylet of node ``i``: the parent process of the replicas it starts."""


def _start(nodes: Sequence[dict[str, Any]]) -> tuple[Any, list[Any]]:
    from ray.cluster_utils import Cluster

    common = {"node_ip_address": "127.0.0.1"}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**common, **nodes[0], "include_dashboard": False},
        shutdown_at_exit=True,
    )
    started = [cluster.head_node]
    try:
        for extra in nodes[1:]:
            started.append(cluster.add_node(**common, **extra))
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise
    return cluster, started


def _kill_new_children(before: set[int]) -> None:
    """A head node that failed to start leaves its GCS (and more) running: end them."""
    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for proc in new:
        with suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(new, timeout=10)


@contextmanager
def ray_cluster(
    nodes: int = 2, cpus: int = 2, extra: Sequence[dict[str, Any]] = (), attempts: int = 3
) -> Iterator[LocalCluster]:
    """Start ``nodes`` raylets (the first one the head) and yield where they are.

    ``extra[i]`` adds options to node ``i``, e.g. ``{"num_gpus": 1, "resources": {"accel": 1}}``
    (Ray takes declared GPUs and resources at their word: no real GPU is needed to place on one).
    """
    _loopback()
    specs = [{"num_cpus": cpus, **(extra[i] if i < len(extra) else {})} for i in range(nodes)]
    for attempt in range(1, attempts + 1):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            cluster, started = _start(specs)
            break
        except Exception:
            _kill_new_children(before)
            if attempt == attempts:
                raise
            time.sleep(2)
    raylets = [n.all_processes["raylet"][0].process.pid for n in started]
    try:
        yield LocalCluster(str(cluster.address), [n.node_id for n in started], raylets)
    finally:
        cluster.shutdown()


def replica_processes(app_prefix: str = "ServeReplica:et-") -> dict[int, int]:
    """Live replica processes as ``{pid: pid of the raylet (node) that started it}``."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline", "ppid"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if app_prefix in cmdline and proc.info["ppid"]:
            found[int(proc.info["pid"])] = int(proc.info["ppid"])
    return found
