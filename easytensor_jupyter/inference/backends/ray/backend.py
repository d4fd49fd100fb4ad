"""The Ray backend: the same interface as the local ``WorkerPool``, served by Ray Serve.

Each model version is one Serve application running ``ModelReplica``. Its name comes from the
model's name and the version's content, so every control plane sharing a registry finds the
same application, and two versions with the same content share one. Applications outlive the
control plane: one that restarts reuses them on the first query instead of loading again.

Serve starts, places, checks, scales and replaces the replicas. Requests for a model with a
fixed replica count go straight to its replicas (``router``, ``presence``), which costs the
control plane a fraction of Serve's handle; autoscaled models, and any request while no
replica is reachable that way, go through the handle, so Serve's autoscaler sees their load.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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
from easytensor_jupyter.inference.backends.ray import cluster
from easytensor_jupyter.inference.backends.ray.bundles import keeper, put_files
from easytensor_jupyter.inference.backends.ray.directory import directory
from easytensor_jupyter.inference.backends.ray.envelope import decode_reply
from easytensor_jupyter.inference.backends.ray.leftovers import sweep_leftovers
from easytensor_jupyter.inference.backends.ray.listing import ClusterView, join
from easytensor_jupyter.inference.backends.ray.placement import (
    Placement,
    count_fitting,
    replica_device,
    replica_needs,
    serve_options,
    unsatisfiable,
)
from easytensor_jupyter.inference.backends.ray.replica import ReplicaConfig
from easytensor_jupyter.inference.backends.ray.router import DirectRouter
from easytensor_jupyter.inference.backends.ray.streaming import open_serve_stream
from easytensor_jupyter.inference.store import content_key

__all__ = ["RayBackend", "RayDeployment", "RayOptions", "app_name", "probe_address"]

log = logging.getLogger("easytensor.ray")
_MARGIN_S = 5.0
_WATCH_S = 1.0


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    namespace: str = "easytensor"
    replica_cpus: float = 1.0
    max_replicas_per_node: int | None = None
    placement: Placement = "spread"
    route: Literal["direct", "handle"] = "direct"
    replica: ReplicaConfig = field(default_factory=dict)

    @property
    def device(self) -> str:
        return str(self.replica.get("device", "cpu"))


def app_name(manifest: Manifest) -> str:
    name = hashlib.sha256(manifest.name.encode()).hexdigest()[:8]
    return f"et-{name}-{content_key(manifest)[:12]}"


@dataclass
class RayDeployment:
    """One deployed application; ``stop`` removes it unless a version still uses it."""

    backend: RayBackend
    app: str
    handle: Any
    manifest: Manifest
    created: bool
    direct: bool = False

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
        self.router = DirectRouter()
        self._apps: dict[Key, RayDeployment] = {}
        self._starting: dict[Key, asyncio.Task[RayDeployment]] = {}
        self._failed: dict[Key, dict[str, Any]] = {}
        self._view = ClusterView()
        self._refreshed = 0.0
        self._keeper: Any = None
        self._directory: Any = None
        self._watcher: asyncio.Task[None] | None = None

    # -- lifetime --------------------------------------------------------------------------

    def connect(self) -> None:
        """Join the cluster (or start a local one when no address is given) and start Serve
        without its HTTP proxy: this server stays the only HTTP front."""
        probe_address(self.options.address)
        sweep_leftovers()
        ray.init(
            address=self.options.address,
            namespace=self.options.namespace,
            log_to_driver=False,
            ignore_reinit_error=True,
            configure_logging=False,
        )
        serve.start(proxy_location="Disabled")
        self._keeper = keeper(self.options.namespace)
        self._directory = directory(self.options.namespace)
        log.info("connected to Ray at %s", ray.get_runtime_context().gcs_address)

    async def close(self) -> None:
        """Leave the applications running: they belong to the cluster, not to this process."""
        for task in [*self._starting.values(), self._watcher]:
            if task is not None:
                task.cancel()
        await self.router.close()
        await asyncio.to_thread(ray.shutdown)

    # -- what the routes ask ---------------------------------------------------------------

    def count(self) -> int:
        return sum(self._view.counts.get(app, 0) for app in {d.app for d in self._apps.values()})

    def replicas(self, key: Key) -> int:
        deployment = self._apps.get(key)
        return self._view.counts.get(deployment.app, 0) if deployment else 0

    def replica_list(self, key: Key) -> list[dict[str, Any]]:
        deployment = self._apps.get(key)
        if deployment is None:
            return []
        reached = self.router.reached(deployment.app)
        rows = self._view.replicas.get(deployment.app, [])
        return [{**row, "direct": row["id"] in reached} for row in rows]

    def status(self, key: Key) -> VersionStatus:
        if key in self._apps:
            return "ready"
        if key in self._starting:
            return "loading"
        return "failed" if key in self._failed else "idle"

    def in_use(self, app: str) -> bool:
        return any(d.app == app for d in self._apps.values())

    async def check_scaling(self, scaling: dict[str, Any]) -> str | None:
        """Why no node can take a replica with these needs, or None."""
        needs = replica_needs(scaling, self.options.replica_cpus, self.options.device)
        return unsatisfiable(await asyncio.to_thread(cluster.live_nodes), needs)

    def _direct(self, scaling: dict[str, Any] | None) -> bool:
        return self.options.route == "direct" and not (scaling or {}).get("autoscaling")

    async def launch(
        self, spec: WorkerSpec, scaling: dict[str, Any] | None = None
    ) -> RayDeployment:
        """Deploy (or find) the version's application and check that its model loaded."""
        manifest = Manifest.model_validate_json(spec.manifest_json)
        app = app_name(manifest)
        existing = False
        try:
            existing = await asyncio.to_thread(cluster.app_exists, app)
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
        direct = self._direct(scaling)
        return RayDeployment(self, app, handle, manifest, created=not existing, direct=direct)

    async def _discard(self, app: str, existing: bool) -> None:
        """Remove what a failed check deployed; an application that was there before serves
        other versions and stays."""
        if not existing:
            await self.delete_app(app)

    def adopt(self, deployment: RayDeployment, key: Key) -> None:
        self._apps[key] = deployment
        self._failed.pop(key, None)
        scaling = self.scaling_of(key[0])
        deployment.direct = self._direct(scaling)
        if scaling:
            asyncio.get_running_loop().create_task(self.apply_scaling(key[0], scaling))

    async def predict(
        self, key: Key, spec: Callable[[], WorkerSpec], instances: list[Any]
    ) -> list[Any]:
        deployment = self._apps.get(key) or await self._ensure(key, spec)
        if deployment.direct:
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.get_running_loop().create_task(self._watch())
            wait = self.predict_timeout + _MARGIN_S
            raw = await self.router.call(deployment.app, instances, wait, self.predict_timeout)
            if raw is not None:
                return decode_reply(raw)
        return decode_reply(await self._through_serve(key, deployment, instances))

    async def open_stream(
        self,
        key: Key,
        spec: Callable[[], WorkerSpec],
        instance: Any,
        chunk_timeout: float,
        total_timeout: float,
    ) -> AsyncIterator[Any]:
        """Streams go through Serve's handle; the replica's worker keeps both timeouts."""
        deployment = self._apps.get(key) or await self._ensure(key, spec)
        return await open_serve_stream(deployment.handle, instance, chunk_timeout, total_timeout)

    async def _through_serve(
        self, key: Key, deployment: RayDeployment, instances: list[Any]
    ) -> object:
        response = deployment.handle.remote(instances)
        try:
            return await asyncio.wait_for(response, self.predict_timeout + _MARGIN_S)
        except TimeoutError:
            response.cancel()
            raise WorkerTimeout(
                f"the prediction took longer than {self.predict_timeout:g} s"
            ) from None
        except BackPressureError as exc:
            raise WorkerBusy(f"every replica is busy: {exc}") from None
        except (RayActorError, ActorUnavailableError, ReplicaUnavailableError) as exc:
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

    def start_standby(self) -> None:
        """Replicas start with their application; there is no spare to prepare."""

    async def warm(self, key: Key, spec: Callable[[], WorkerSpec]) -> None:
        if key not in self._apps:
            await self._ensure(key, spec)

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
        for key, deployment in self._apps.items():
            if key[0] == model_id:
                deployment.direct = self._direct(scaling)
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
        """Called by the housekeeping loop: another control plane may have changed a model's
        scaling, so re-read which ones take the direct path, and refresh the replicas."""
        for model_id in {k[0] for k in self._apps}:
            direct = self._direct(await asyncio.to_thread(self.scaling_of, model_id))
            for key, deployment in self._apps.items():
                if key[0] == model_id:
                    deployment.direct = direct
        await self.refresh()

    async def _watch(self) -> None:
        """While any model takes the direct path, keep its routing table about a second old."""
        while any(d.direct for d in self._apps.values()):
            await self.refresh(max_age=_WATCH_S / 2)
            await asyncio.sleep(_WATCH_S)

    async def refresh(self, max_age: float = 1.0) -> None:
        """Ask Serve and the directory about the replicas, at most once per ``max_age`` s."""
        now = time.monotonic()
        if now - self._refreshed < max_age:
            return
        self._refreshed = now
        try:
            details, entries = await asyncio.to_thread(self._read_cluster)
        except Exception as exc:  # the cluster may be briefly unreachable
            log.warning("cannot read Ray Serve's status: %s", exc)
            return
        self._view = join(details, entries)
        direct = {d.app for d in self._apps.values() if d.direct}
        self.router.update({a: r for a, r in self._view.routes.items() if a in direct})

    def _read_cluster(self) -> tuple[dict[str, Any], dict[str, Any]]:
        details = cluster.instance_details()
        try:
            entries: dict[str, Any] = ray.get(self._directory.entries.remote(), timeout=5)
        except (RayError, AttributeError) as exc:
            log.warning("cannot read the replica directory: %s", exc)
            entries = {}
        return details, entries

    async def delete_app(self, app: str) -> None:
        await asyncio.to_thread(cluster.remove, app, [self._keeper, self._directory])

    def _run(self, app: str, manifest: Manifest, scaling: dict[str, Any] | None) -> None:
        """Deploy or update the application; runs in a thread."""
        o = self.options
        needs = replica_needs(scaling, o.replica_cpus, o.device)
        options = serve_options(
            manifest,
            scaling,
            replica_cpus=o.replica_cpus,
            device=o.device,
            placement=o.placement,
            max_replicas_per_node=o.max_replicas_per_node,
            fitting=count_fitting(cluster.live_nodes(), needs),
        )
        cfg = {**o.replica, "device": replica_device(scaling, o.device)}
        cluster.deploy(app, manifest, options, cfg)


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
