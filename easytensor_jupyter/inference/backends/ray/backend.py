"""The Ray backend: the same interface as the local ``WorkerPool``, served by Ray Serve.

Each model version is one Serve application running ``ModelReplica``. Its name comes from the
model's name and the version's content, so every control plane sharing a registry finds the
same application, and two versions with the same content share one. Applications outlive the
control plane: one that restarts reuses them on the first query instead of loading again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    RayServeException,
    ReplicaUnavailableError,
)

from easytensor_jupyter.bundle import Manifest
from easytensor_jupyter.inference.backends.base import Key, VersionStatus, WorkerSpec
from easytensor_jupyter.inference.backends.errors import (
    WorkerBusy,
    WorkerError,
    WorkerLoadError,
    WorkerRestarted,
    WorkerTimeout,
)
from easytensor_jupyter.inference.backends.ray.bundles import keeper, put_files
from easytensor_jupyter.inference.backends.ray.envelope import decode_reply
from easytensor_jupyter.inference.backends.ray.replica import ModelReplica, ReplicaConfig
from easytensor_jupyter.inference.store import content_key

__all__ = [
    "RayBackend",
    "RayDeployment",
    "RayOptions",
    "app_name",
    "probe_address",
    "serve_options",
]

log = logging.getLogger("easytensor.ray")
_MARGIN_S = 5.0


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    namespace: str = "easytensor"
    replica_cpus: float = 1.0
    max_replicas_per_node: int | None = None
    replica: ReplicaConfig = field(default_factory=dict)


def app_name(manifest: Manifest) -> str:
    name = hashlib.sha256(manifest.name.encode()).hexdigest()[:8]
    return f"et-{name}-{content_key(manifest)[:12]}"


def serve_options(
    manifest: Manifest, scaling: dict[str, Any] | None, options: RayOptions
) -> dict[str, Any]:
    """Deployment options: resources, scaling, and room for a batch of requests in flight."""
    batch = manifest.batching.max_batch_size if manifest.batching else 1
    actor: dict[str, Any] = {"num_cpus": options.replica_cpus}
    if str(options.replica.get("device", "cpu")).startswith("cuda"):
        actor["num_gpus"] = 1
    out: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": max(32, 2 * batch),
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 5.0,
    }
    if options.max_replicas_per_node:
        out["max_replicas_per_node"] = options.max_replicas_per_node
    auto = (scaling or {}).get("autoscaling")
    if auto:
        out["num_replicas"] = "auto"
        out["autoscaling_config"] = {
            "min_replicas": auto["min_replicas"],
            "max_replicas": auto["max_replicas"],
            "initial_replicas": max(1, auto["min_replicas"]),
            "target_ongoing_requests": auto["target_ongoing_requests"],
        }
    else:
        out["num_replicas"] = int((scaling or {}).get("replicas") or 1)
    return out


@dataclass
class RayDeployment:
    """One deployed application; ``stop`` removes it unless a version still uses it."""

    backend: RayBackend
    app: str
    handle: Any
    manifest: Manifest
    created: bool

    async def stop(self) -> None:
        if self.created and not self.backend.in_use(self.app):
            await self.backend.delete_app(self.app)


class RayBackend:
    name = "ray"

    def __init__(
        self,
        options: RayOptions,
        *,
        predict_timeout: float,
        load_timeout: float,
        scaling_of: Callable[[str], dict[str, Any] | None],
    ) -> None:
        self.options = options
        self.predict_timeout = predict_timeout
        self.load_timeout = load_timeout
        self.scaling_of = scaling_of
        self._apps: dict[Key, RayDeployment] = {}
        self._starting: dict[Key, asyncio.Task[RayDeployment]] = {}
        self._failed: dict[Key, dict[str, Any]] = {}
        self._running: dict[str, int] = {}
        self._refreshed = 0.0
        self._keeper: Any = None

    # -- lifetime --------------------------------------------------------------------------

    def connect(self) -> None:
        """Join the cluster (or start a local one when no address is given) and start Serve
        without its HTTP proxy: this server stays the only HTTP front."""
        probe_address(self.options.address)
        ray.init(
            address=self.options.address,
            namespace=self.options.namespace,
            log_to_driver=False,
            ignore_reinit_error=True,
            configure_logging=False,
        )
        serve.start(proxy_location="Disabled")
        self._keeper = keeper(self.options.namespace)
        log.info("connected to Ray at %s", ray.get_runtime_context().gcs_address)

    async def close(self) -> None:
        """Leave the applications running: they belong to the cluster, not to this process."""
        for task in list(self._starting.values()):
            task.cancel()
        await asyncio.to_thread(ray.shutdown)

    # -- what the routes ask ---------------------------------------------------------------

    def count(self) -> int:
        return sum(self._running.get(app, 0) for app in {d.app for d in self._apps.values()})

    def replicas(self, key: Key) -> int:
        deployment = self._apps.get(key)
        return self._running.get(deployment.app, 0) if deployment else 0

    def status(self, key: Key) -> VersionStatus:
        if key in self._apps:
            return "ready"
        if key in self._starting:
            return "loading"
        return "failed" if key in self._failed else "idle"

    def in_use(self, app: str) -> bool:
        return any(d.app == app for d in self._apps.values())

    async def launch(
        self, spec: WorkerSpec, scaling: dict[str, Any] | None = None
    ) -> RayDeployment:
        """Deploy (or find) the version's application and check that its model loaded."""
        manifest = Manifest.model_validate_json(spec.manifest_json)
        app = app_name(manifest)
        existing = False
        try:
            existing = await asyncio.to_thread(self._app_exists, app)
            if not existing:
                await asyncio.to_thread(put_files, self._keeper, app, spec.files)
                await asyncio.wait_for(
                    asyncio.to_thread(self._run, app, manifest, scaling), self.load_timeout
                )
            handle = serve.get_app_handle(app)
            decode_reply(await handle.load_status.remote())
        except WorkerLoadError:
            await self._discard(app, existing)
            raise
        except TimeoutError:
            await self._discard(app, existing)
            message = f"the model did not load within {self.load_timeout:g} s"
            raise WorkerLoadError({"stage": "timeout", "message": message}) from None
        except (RayServeException, RayError, RuntimeError, ValueError) as exc:
            await self._discard(app, existing)
            message = f"Ray Serve could not deploy the model: {exc}"
            raise WorkerLoadError({"stage": "worker", "message": message}) from exc
        await self.refresh(max_age=0.0)
        return RayDeployment(self, app, handle, manifest, created=not existing)

    async def _discard(self, app: str, existing: bool) -> None:
        """Remove what a failed check deployed; an application that was there before serves
        other versions and stays."""
        if not existing:
            await self.delete_app(app)

    def adopt(self, deployment: RayDeployment, key: Key) -> None:
        self._apps[key] = deployment
        self._failed.pop(key, None)
        scaling = self.scaling_of(key[0])
        if scaling:
            asyncio.get_running_loop().create_task(self.apply_scaling(key[0], scaling))

    async def predict(
        self, key: Key, spec: Callable[[], WorkerSpec], instances: list[Any]
    ) -> list[Any]:
        deployment = self._apps.get(key) or await self._ensure(key, spec)
        response = deployment.handle.remote(instances)
        try:
            raw = await asyncio.wait_for(response, self.predict_timeout + _MARGIN_S)
        except TimeoutError:
            response.cancel()
            raise WorkerTimeout(
                f"the prediction took longer than {self.predict_timeout:g} s"
            ) from None
        except BackPressureError as exc:
            raise WorkerBusy(f"every replica is busy: {exc}") from None
        except (
            RayActorError,
            ActorUnavailableError,
            ReplicaUnavailableError,
        ) as exc:
            raise WorkerRestarted(
                f"the replica serving this request died ({type(exc).__name__})"
            ) from None
        except RayTaskError as exc:
            raise WorkerError(f"the replica failed: {type(exc.cause).__name__}") from None
        except RayServeException as exc:
            self._apps.pop(key, None)
            raise WorkerRestarted(
                f"the model's deployment is gone ({exc}); it is redeployed on retry"
            ) from None
        return decode_reply(raw)

    async def _ensure(self, key: Key, spec: Callable[[], WorkerSpec]) -> RayDeployment:
        task = self._starting.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._start(key, spec()))
            self._starting[key] = task
        return await asyncio.shield(task)

    async def _start(self, key: Key, spec: WorkerSpec) -> RayDeployment:
        try:
            deployment = await self.launch(spec, self.scaling_of(key[0]))
        except WorkerLoadError as exc:
            self._failed[key] = exc.error
            raise
        finally:
            self._starting.pop(key, None)
        self._apps[key] = deployment
        self._failed.pop(key, None)
        return deployment

    async def apply_scaling(self, model_id: str, scaling: dict[str, Any] | None) -> None:
        """Redeploy the model's applications with new options; Ray Serve changes only the
        replica count when nothing else changed."""
        apps = {d.app: d for k, d in self._apps.items() if k[0] == model_id}
        for app, deployment in apps.items():
            await asyncio.to_thread(self._run, app, deployment.manifest, scaling)
        await self.refresh(max_age=0.0)

    async def stop_model(self, model_id: str, version: int | None = None) -> None:
        gone = [k for k in self._apps if k[0] == model_id and version in (None, k[1])]
        for key in [k for k in self._failed if k[0] == model_id]:
            del self._failed[key]
        apps = {self._apps.pop(k).app for k in gone}
        for app in apps:
            if not self.in_use(app):
                await self.delete_app(app)

    async def reap_idle(self) -> None:
        """Called by the housekeeping loop: refresh replica counts. Ray scales, we don't."""
        await self.refresh()

    async def refresh(self, max_age: float = 1.0) -> None:
        """Ask Serve for replica counts, at most once per ``max_age`` seconds."""
        now = time.monotonic()
        if now - self._refreshed < max_age:
            return
        self._refreshed = now
        try:
            self._running = await asyncio.to_thread(self._replica_counts)
        except Exception as exc:  # the cluster may be briefly unreachable
            log.warning("cannot read Ray Serve's status: %s", exc)

    async def delete_app(self, app: str) -> None:
        await asyncio.to_thread(self._delete, app)

    # -- blocking calls into Ray, run in threads -------------------------------------------

    def _app_exists(self, app: str) -> bool:
        return app in serve.status().applications

    def _run(
        self,
        app: str,
        manifest: Manifest,
        scaling: dict[str, Any] | None,
    ) -> None:
        options = serve_options(manifest, scaling, self.options)
        started = time.monotonic()
        deployment = ModelReplica.options(**options)  # type: ignore[attr-defined]
        # Serve gives every imperative deploy a random version, which replaces all replicas
        # even when only their count changed; the app name already pins what they run.
        deployment._version = app
        target = deployment.bind(app, manifest.name, manifest.to_json_bytes(), self.options.replica)
        serve.run(target, name=app, route_prefix=None)
        log.info("%s: deployed %s in %.1f s", manifest.name, app, time.monotonic() - started)

    def _delete(self, app: str) -> None:
        serve.delete(app, _blocking=True)
        if self._keeper is not None:
            ray.get(self._keeper.drop.remote(app))

    @staticmethod
    def _replica_counts() -> dict[str, int]:
        counts = {}
        for app, status in serve.status().applications.items():
            counts[app] = sum(
                n
                for d in status.deployments.values()
                for state, n in d.replica_states.items()
                if getattr(state, "value", state) == "RUNNING"
            )
        return counts


def probe_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on a wrong ``--ray-address``: ``ray.init`` would retry for minutes."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConnectionError(
            f"nothing answers at {address} ({reason}); start the cluster with "
            "`ray start --head`, or check --ray-address"
        ) from None
