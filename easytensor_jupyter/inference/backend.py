"""What the routes need from whatever runs the models: local worker processes (``WorkerPool``)
or Ray Serve deployments (``raybackend.RayBackend``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from easytensor_jupyter.inference.pool import VersionStatus
from easytensor_jupyter.inference.workers import Key, WorkerSpec

__all__ = ["Loaded", "ServingBackend"]


class Loaded(Protocol):
    """A model loaded for an upload's check; kept as the new version's, or stopped."""

    async def stop(self) -> None: ...


class ServingBackend(Protocol):
    name: str

    def count(self) -> int: ...

    def replicas(self, key: Key) -> int: ...

    def status(self, key: Key) -> VersionStatus: ...

    async def launch(self, spec: WorkerSpec) -> Loaded: ...

    def adopt(self, loaded: Any, key: Key) -> None: ...

    async def predict(
        self, key: Key, spec: Callable[[], WorkerSpec], instances: list[Any]
    ) -> list[Any]: ...

    async def apply_scaling(self, model_id: str, scaling: dict[str, Any] | None) -> None: ...

    async def stop_model(self, model_id: str, version: int | None = None) -> None: ...

    async def reap_idle(self) -> None: ...

    async def refresh(self) -> None:
        """Bring ``replicas`` up to date before a model is described."""

    async def close(self) -> None: ...
