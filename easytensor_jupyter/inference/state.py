"""What the routes share: settings, the store, the serving backend, auth, metrics, live stats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import Request

from easytensor_jupyter.bundle import Limits, Manifest
from easytensor_jupyter.inference.api.auth import Authenticator, Principal
from easytensor_jupyter.inference.backends.base import ServingBackend, WorkerSpec
from easytensor_jupyter.inference.environments import ModelEnvironments
from easytensor_jupyter.inference.metrics import Metrics
from easytensor_jupyter.inference.options import ServeOptions
from easytensor_jupyter.inference.store import Store

if TYPE_CHECKING:
    from easytensor_jupyter.inference.traffic import Traffic

__all__ = ["AppState", "ModelStats", "get_state", "require_admin", "require_caller"]


@dataclass
class ModelStats:
    requests: int = 0
    errors: int = 0
    last_latency_ms: float | None = None


@dataclass
class AppState:
    settings: ServeOptions
    store: Store
    pool: ServingBackend
    auth: Authenticator
    metrics: Metrics
    envs: ModelEnvironments
    stats: dict[str, ModelStats] = field(default_factory=dict)
    traffic: Traffic = field(init=False, repr=False)

    @property
    def limits(self) -> Limits:
        return Limits(max_file_bytes=self.settings.max_upload_bytes)

    def spec(self, model_id: str, version: int, manifest: Manifest) -> WorkerSpec:
        files = {name: self.store.blobs.path(e.sha256) for name, e in manifest.files.items()}
        return WorkerSpec(
            model_id, version, files, manifest.to_json_bytes(), self.envs.path_for(manifest)
        )

    def stats_for(self, model_id: str) -> ModelStats:
        stats = self.stats.get(model_id)
        if stats is None:
            stats = self.stats[model_id] = ModelStats()
        return stats


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.easytensor
    return state


_bearer = HTTPBearer(auto_error=False, description="The admin key, or a model's query token")
_access_token = APIKeyHeader(
    name="accessToken",
    auto_error=False,
    description="A query token (the original EasyTensor header)",
)


_Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
_AccessToken = Annotated[str | None, Security(_access_token)]


async def require_admin(request: Request, _: _Bearer) -> Principal:
    """Checked before the body is read, so an unauthorised upload costs no bandwidth.

    Async on purpose: FastAPI runs a plain ``def`` dependency in a thread, which costs more
    than the lookup itself.
    """
    return get_state(request).auth.require_admin(request)


async def require_caller(request: Request, _: _Bearer, __: _AccessToken) -> Principal:
    return get_state(request).auth.authenticate(request)
