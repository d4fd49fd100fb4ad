"""Bundle files in Ray's object store, owned by a detached actor.

Objects normally die with the process that put them. Replicas that Ray restarts later (a node
lost, a health check failed) must still find their files after the control plane that uploaded
them has stopped or restarted, so a small detached actor puts the chunks itself and keeps the
references, one set per application, until the model is deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

__all__ = ["CHUNK_BYTES", "BundleKeeper", "keeper", "put_files"]

CHUNK_BYTES = 64 << 20
KEEPER_NAME = "easytensor-bundles"


@ray.remote(num_cpus=0, max_restarts=0)
class BundleKeeper:
    def __init__(self) -> None:
        self.refs: dict[str, list[Any]] = {}

    def put(self, app: str, chunk: bytes) -> list[Any]:
        ref = ray.put(chunk)
        self.refs.setdefault(app, []).append(ref)
        return [ref]

    def drop(self, app: str) -> bool:
        return self.refs.pop(app, None) is not None

    def apps(self) -> list[str]:
        return sorted(self.refs)


def keeper(namespace: str) -> Any:
    return BundleKeeper.options(  # type: ignore[attr-defined]
        name=KEEPER_NAME, namespace=namespace, lifetime="detached", get_if_exists=True
    ).remote()


def put_files(handle: Any, app: str, files: dict[str, Path]) -> dict[str, list[Any]]:
    """Read each file in chunks, so a large model never sits whole in the control plane."""
    out: dict[str, list[Any]] = {}
    for name, path in files.items():
        chunks: list[Any] = []
        with path.open("rb") as f:
            while True:
                data = f.read(CHUNK_BYTES)
                chunks.append(ray.get(handle.put.remote(app, data)))
                if len(data) < CHUNK_BYTES:
                    break
        out[name] = chunks
    return out
