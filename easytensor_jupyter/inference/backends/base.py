"""What the routes need from whatever runs the models: local worker processes (``WorkerPool``)
or Ray Serve deployments (``RayBackend``), and the spec of a version either one runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = ["Key", "Loaded", "ServingBackend", "VersionStatus", "WorkerSpec"]

Key = tuple[str, int]
VersionStatus = Literal["ready", "loading", "idle", "failed"]


@dataclass(frozen=True)
class WorkerSpec:
    model_id: str
    version: int
    files: dict[str, Path]
    manifest_json: bytes
    environment: Path | None = None
    """The version's own environment (its ``bin/python`` runs the worker), or None for the
    server's."""

    @property
    def python(self) -> str | None:
        return str(self.environment / "bin" / "python") if self.environment else None

    @property
    def key(self) -> Key:
        return (self.model_id, self.version)

    @property
    def label(self) -> str:
        return f"{self.model_id} v{self.version}" if self.version else f"{self.model_id} (check)"


class Loaded(Protocol):
    """A model loaded for an upload's check; kept as the new version's, or stopped."""

    async def stop(self) -> None: ...


class ServingBackend(Protocol):
    name: str

    def count(self) -> int: ...

    def replicas(self, key: Key) -> int: ...

    def replica_list(self, key: Key) -> list[dict[str, Any]]:
        """The replicas (or worker processes) of ``key``, in the shape of ``ReplicaOut``."""
        ...

    async def check_scaling(self, scaling: dict[str, Any]) -> str | None:
        """Why these scaling settings cannot be met here (e.g. no node has the GPU asked
        for), or None; asked before the settings are stored."""
        ...

    def status(self, key: Key) -> VersionStatus: ...

    async def launch(self, spec: WorkerSpec) -> Loaded: ...

    def adopt(self, loaded: Any, key: Key) -> None: ...

    async def predict(
        self, key: Key, spec: Callable[[], WorkerSpec], instances: list[Any]
    ) -> list[Any]: ...

    async def warm(self, key: Key, spec: Callable[[], WorkerSpec]) -> None:
        """Load ``key`` now if it is not loaded or loading; a query that arrives meanwhile
        waits for this load instead of starting another."""
        ...

    def start_standby(self) -> None:
        """Get ready for the first load, where the backend can (a spare worker)."""

    async def open_stream(
        self,
        key: Key,
        spec: Callable[[], WorkerSpec],
        instance: Any,
        chunk_timeout: float,
        total_timeout: float,
    ) -> AsyncIterator[Any]:
        """The chunks of ``predict_stream(instance)``; raises ``StreamUnsupported`` before
        any chunk when the model has none."""
        ...

    async def apply_scaling(self, model_id: str, scaling: dict[str, Any] | None) -> None: ...

    async def stop_model(self, model_id: str, version: int | None = None) -> None: ...

    async def reap_idle(self) -> None: ...

    async def refresh(self) -> None:
        """Bring ``replicas`` up to date before a model is described."""

    async def close(self) -> None: ...
