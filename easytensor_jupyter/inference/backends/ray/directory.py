"""Where each replica can be reached and how it is doing, in one small detached actor.

Ray Serve tells a control plane which replicas run, on which node, in which state; it does not
say how to reach one except through its own router. Every replica therefore announces itself
here every ``BEAT_S`` seconds: its direct address and secret (see ``wire``), whether its model
loaded, its worker's device, and how many requests it has answered. An entry that stops
beating is gone after ``TTL_S``. The actor restarts if its node goes, and the next beats
fill it again.
"""

from __future__ import annotations

import time
from typing import Any

import ray

__all__ = ["BEAT_S", "DIRECTORY_NAME", "TTL_S", "ReplicaDirectory", "directory"]

DIRECTORY_NAME = "easytensor-replicas"
BEAT_S = 2.0
TTL_S = 10.0


@ray.remote(num_cpus=0, max_restarts=-1)
class ReplicaDirectory:
    def __init__(self) -> None:
        self.apps: dict[str, dict[str, dict[str, Any]]] = {}

    def beat(self, app: str, replica_id: str, info: dict[str, Any]) -> None:
        self.apps.setdefault(app, {})[replica_id] = {**info, "seen": time.time()}

    def leave(self, app: str, replica_id: str) -> None:
        replicas = self.apps.get(app)
        if replicas is not None:
            replicas.pop(replica_id, None)
            if not replicas:
                del self.apps[app]

    def drop(self, app: str) -> None:
        self.apps.pop(app, None)

    def entries(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every live entry, by application and replica id."""
        cutoff = time.time() - TTL_S
        for app in list(self.apps):
            fresh = {k: v for k, v in self.apps[app].items() if v["seen"] >= cutoff}
            if fresh:
                self.apps[app] = fresh
            else:
                del self.apps[app]
        return self.apps


def directory(namespace: str) -> Any:
    return ReplicaDirectory.options(  # type: ignore[attr-defined]
        name=DIRECTORY_NAME, namespace=namespace, lifetime="detached", get_if_exists=True
    ).remote()
