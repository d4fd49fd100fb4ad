"""The FastAPI application: routes, error shapes, middleware and the worker pool's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from easytensor_jupyter._version import __version__
from easytensor_jupyter.inference.api import (
    compare,
    models,
    predict,
    request_logs,
    system,
    tokens,
    traffic,
    versions_diff,
)
from easytensor_jupyter.inference.api.auth import Authenticator
from easytensor_jupyter.inference.api.bodies import PredictBodies
from easytensor_jupyter.inference.api.errors import (
    OrjsonResponse,
    error_response,
    install_error_handlers,
)
from easytensor_jupyter.inference.api.upload import BodyLimitMiddleware
from easytensor_jupyter.inference.backends.base import ServingBackend
from easytensor_jupyter.inference.backends.local.pool import WorkerPool
from easytensor_jupyter.inference.backends.local.sandbox import (
    WORKER_FIELDS,
    Sandbox,
    sandbox_options,
    watchdog_for,
)
from easytensor_jupyter.inference.backends.local.workdir import sweep_stale_dirs
from easytensor_jupyter.inference.environments import ModelEnvironments, prune_environments
from easytensor_jupyter.inference.metrics import Metrics, MetricsMiddleware
from easytensor_jupyter.inference.options import ServeOptions
from easytensor_jupyter.inference.request_log import LogLimits, RequestLog
from easytensor_jupyter.inference.state import AppState
from easytensor_jupyter.inference.store import (
    ConflictError,
    NotFoundError,
    RegistryUnavailable,
    Store,
)
from easytensor_jupyter.inference.store.blobs import StoreFull
from easytensor_jupyter.inference.traffic import KEY_HEADER, VERSION_HEADER, Traffic
from easytensor_jupyter.inference.warmup import warm_defaults

__all__ = ["create_app"]

log = logging.getLogger("easytensor.server")

_DESCRIPTION = """Publish PyTorch models as HTTP endpoints.

Admin routes need `Authorization: Bearer <admin key>`. Predictions take a model's query token
(`Authorization: Bearer et_q_...` or `accessToken: et_q_...`) or the admin key. Every error is
`{"error": {"code", "message", "detail"}}`."""


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, "not_found", str(exc))


async def _store_full(request: Request, exc: Exception) -> Response:
    return error_response(507, "store_full", str(exc))


async def _registry_unavailable(request: Request, exc: Exception) -> Response:
    return error_response(
        503, "registry_unavailable", f"{exc}; retry", headers={"Retry-After": "1"}
    )


async def _conflict(request: Request, exc: Exception) -> Response:
    return error_response(409, "conflict", str(exc))


async def _housekeeping(state: AppState) -> None:
    """Unload idle workers and write token usage, a few times per idle period; once, soon
    after start, drop model environments that no stored version uses."""
    tick = max(0.2, min(state.settings.idle_unload / 4, 10.0))
    pruned = False
    while True:
        await asyncio.sleep(tick)
        try:
            if not pruned:
                pruned = True
                await asyncio.to_thread(prune_environments, state)
            await state.pool.reap_idle()
            if state.auth.last_used:
                await asyncio.to_thread(state.auth.flush_last_used)
        except Exception:
            log.exception("housekeeping failed")


def worker_settings(settings: ServeOptions) -> dict[str, Any]:
    """The worker sandbox's settings as plain data (what a Ray replica receives too)."""
    return {name: getattr(settings, name) for name in WORKER_FIELDS}


def _local_pool(settings: ServeOptions, store: Store, metrics: Metrics) -> WorkerPool:
    resolved = sandbox_options(worker_settings(settings))
    return WorkerPool(
        predict_timeout=settings.predict_timeout,
        load_timeout=settings.load_timeout,
        idle_unload=settings.idle_unload,
        device=settings.device,
        threads=settings.threads,
        metrics=metrics,
        max_workers=settings.max_workers,
        workers_per_model=settings.workers_per_model,
        standby=settings.standby,
        sandbox=Sandbox(resolved) if settings.sandbox else None,
        watchdog=watchdog_for(resolved),
        scaling_of=_scaling_lookup(store),
        max_output=int(resolved.max_output_mb * (1 << 20)),
    )


def _scaling_lookup(store: Store) -> Callable[[str], dict[str, Any] | None]:
    def scaling_of(model_id: str) -> dict[str, Any] | None:
        try:
            return store.get_model(model_id).scaling
        except NotFoundError:
            return None

    return scaling_of


def _ray_backend(settings: ServeOptions, store: Store) -> ServingBackend:
    from easytensor_jupyter.inference.backends.ray import RayBackend, RayOptions

    replica = {
        "device": settings.device,
        "threads": settings.threads,
        "predict_timeout": settings.predict_timeout,
        "load_timeout": settings.load_timeout,
        "max_pending": 256,
        "namespace": settings.ray_namespace,
        "sandbox": settings.sandbox,
        "worker": worker_settings(settings),
    }
    options = RayOptions(
        address=settings.ray_address,
        namespace=settings.ray_namespace,
        replica_cpus=settings.ray_replica_cpus,
        max_replicas_per_node=settings.ray_max_replicas_per_node,
        placement=settings.ray_placement,
        route=settings.ray_route,
        replica=replica,
    )
    return RayBackend(
        options,
        predict_timeout=settings.predict_timeout,
        load_timeout=settings.load_timeout,
        scaling_of=_scaling_lookup(store),
    )


def _log_limits(settings: ServeOptions) -> LogLimits:
    return LogLimits(
        keep=settings.log_keep,
        keep_bytes=int(settings.log_keep_mb * (1 << 20)),
        max_input_bytes=int(settings.log_input_kb * 1024),
        max_blob_bytes=int(settings.log_blob_kb * 1024),
        redact=settings.log_redact,
    )


def create_app(settings: ServeOptions, store: Store, admin_key: str) -> FastAPI:
    """Build the app around an opened store; workers start on demand and stop with the app.

    With the Ray backend, the caller connects it (``state.pool.connect()``) before serving.
    """
    metrics = Metrics()
    pool: ServingBackend
    if settings.backend == "ray":
        pool = _ray_backend(settings, store)
    else:
        pool = _local_pool(settings, store, metrics)
    metrics.track_workers(pool.count)
    envs = ModelEnvironments(settings, store.root)
    state = AppState(settings, store, pool, Authenticator(admin_key, store), metrics, envs)
    state.traffic = Traffic(state, RequestLog(store, settings.request_log, _log_limits(settings)))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(sweep_stale_dirs)
        await state.traffic.reload()
        task = asyncio.create_task(_housekeeping(state))
        warming = asyncio.create_task(warm_defaults(state))
        traffic_task = asyncio.create_task(state.traffic.run())
        try:
            yield
        finally:
            for background in (warming, task, traffic_task):
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            await pool.close()
            with contextlib.suppress(Exception):
                state.auth.flush_last_used()

    app = FastAPI(
        title="EasyTensor inference server",
        version=__version__,
        description=_DESCRIPTION,
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
    )
    app.state.easytensor = state
    app.state.bodies = bodies = PredictBodies(settings)
    install_error_handlers(app)
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(ConflictError, _conflict)
    app.add_exception_handler(RegistryUnavailable, _registry_unavailable)
    app.add_exception_handler(StoreFull, _store_full)
    for module in (models, tokens, predict, system, versions_diff, request_logs, traffic, compare):
        app.include_router(module.router)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        upload_max_bytes=settings.max_upload_bytes,
        budget=bodies.budget,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "accessToken", KEY_HEADER],
            expose_headers=[VERSION_HEADER],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
