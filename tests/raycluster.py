"""A real two-node Ray cluster on this machine for the Ray backend's tests.

Both nodes and every driver stay on loopback: Ray otherwise advertises the machine's network
address, and tests must not send traffic beyond 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

__all__ = ["LOOPBACK_ENV", "ray_cluster", "replica_processes"]

# Ray's switch for "never resolve localhost to the network address" (meant for laptops).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@contextmanager
def ray_cluster(nodes: int = 2, cpus: int = 2) -> Iterator[str]:
    """Start ``nodes`` raylets (the first one the head) and yield the head's address."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in LOOPBACK_ENV}
    os.environ.update(LOOPBACK_ENV)
    common = {"num_cpus": cpus, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**common, "include_dashboard": False},
        shutdown_at_exit=True,
    )
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**common)
        cluster.wait_for_nodes()
        yield str(cluster.address)
    finally:
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def replica_processes(app_prefix: str = "ServeReplica:et-") -> dict[int, int]:
    """Live replica processes as ``{pid: pid of the raylet (node) that started it}``."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline", "ppid"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if app_prefix in cmdline and proc.info["ppid"]:
            found[int(proc.info["pid"])] = int(proc.info["ppid"])
    return found
