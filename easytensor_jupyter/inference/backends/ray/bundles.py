"""Bundle files in Ray's object store, owned by a detached actor.

Objects normally die with the process that put them. Replicas that Ray restarts later (a node
lost, a health check failed) must still find their files after the control plane that uploaded
them has stopped or restarted, so a small detached actor puts the chunks itself and keeps the
references, one set per application, until the model is deleted. Replicas ask it for them by
application name, which also keeps the deployment's arguments the same from one deploy to the
next: Ray Serve then changes a replica count without restarting the running replicas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

__all__ = ["CHUNK_BYTES", "KEEPER_NAME", "BundleKeeper", "keeper", "put_files"]

CHUNK_BYTES = 64 << 20
KEEPER_NAME = "easytensor-bundles"


@ray.remote(num_cpus=0, max_restarts=0)
class BundleKeeper:
    def __init__(self) -> None:
        self.refs: dict[str, dict[str, list[Any]]] = {}

    def start(self, app: str) -> None:
        self.refs[app] = {}

    def put(self, app: str, name: str, chunk: bytes) -> None:
        self.refs[app].setdefault(name, []).append(ray.put(chunk))

    def files(self, app: str) -> dict[str, list[list[Any]]] | None:
        """Each chunk's reference nested in a list, so Ray hands it over unresolved."""
        found = self.refs.get(app)
        if found is None:
            return None
        return {name: [[ref] for ref in refs] for name, refs in found.items()}

    def drop(self, app: str) -> bool:
        return self.refs.pop(app, None) is not None


def keeper(namespace: str) -> Any:
    return BundleKeeper.options(  # type: ignore[attr-defined]
        name=KEEPER_NAME, namespace=namespace, lifetime="detached", get_if_exists=True
    ).remote()


def put_files(handle: Any, app: str, files: dict[str, Path]) -> None:
    """Read each file in chunks, so a large model never sits whole in the control plane."""
    ray.get(handle.start.remote(app))
    for name, path in files.items():
        with path.open("rb") as f:
            while True:
                data = f.read(CHUNK_BYTES)
                ray.get(handle.put.remote(app, name, data))
                if len(data) < CHUNK_BYTES:
                    break
