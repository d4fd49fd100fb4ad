"""Which workers run: started on upload (the load check) or on the first query, unloaded when
idle or when too many are up, replaced after a crash or a timeout, all stopped at exit.

Importing torch takes a worker a second or two, so the pool keeps spare processes that have
done so already (``spares.py``): the next load (an upload's check, a restart after a crash) only
imports the model. The spares go away with the last model worker, after a quiet period.

With ``workers_per_model`` above one, a version's first worker answers at once and its siblings
start in the background after it; each request goes to the ready worker with the fewest
requests in flight, so a slow or busy worker does not hold up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

from easytensor_jupyter.inference.backends.base import Key, VersionStatus, WorkerSpec
from easytensor_jupyter.inference.backends.errors import (
    StreamUnsupported,
    WorkerBusy,
    WorkerLoadError,
    WorkerTimeout,
)
from easytensor_jupyter.inference.backends.local.sandbox import Sandbox
from easytensor_jupyter.inference.backends.local.spares import Spares
from easytensor_jupyter.inference.backends.local.watchdog import Watchdog
from easytensor_jupyter.inference.backends.local.worker import ExitReason, Worker
from easytensor_jupyter.inference.metrics import Metrics
from easytensor_jupyter.inference.runtime.protocol import MAX_OUTPUT_BYTES

__all__ = ["WorkerPool"]

log = logging.getLogger("easytensor.workers")


class WorkerPool:
    name = "local"

    def __init__(
        self,
        *,
        predict_timeout: float,
        load_timeout: float,
        idle_unload: float,
        device: str,
        threads: int,
        metrics: Metrics,
        max_pending: int = 256,
        max_workers: int = 8,
        standby: int = 1,
        workers_per_model: int = 1,
        sandbox: Sandbox | None = None,
        watchdog: Watchdog | None = None,
        scaling_of: Callable[[str], dict[str, Any] | None] | None = None,
        max_output: int = MAX_OUTPUT_BYTES,
    ) -> None:
        self.max_output = max_output
        self.scaling_of = scaling_of
        self._per_model: dict[str, int] = {}
        self.sandbox = sandbox
        self.watchdog = watchdog
        self.predict_timeout = predict_timeout
        self.load_timeout = load_timeout
        self.idle_unload = idle_unload
        self.device = device
        self.threads = threads
        self.metrics = metrics
        self.max_pending = max_pending
        self.max_workers = max_workers
        self.workers_per_model = max(1, workers_per_model)
        self._siblings: dict[Key, list[Worker]] = {}
        self._growing: dict[Key, asyncio.Task[None]] = {}
        self._grow_after: dict[Key, float] = {}
        self._workers: dict[Key, Worker] = {}
        self._starting: dict[Key, asyncio.Task[Worker]] = {}
        self._failed: dict[Key, dict[str, Any]] = {}
        self._all: set[Worker] = set()
        self._spares = Spares(
            lambda: self._new_worker(WorkerSpec("standby", 0, {}, b"")),
            standby,
            self._all.discard,
        )
        self._closing = False
        self._born: dict[Worker, float] = {}
        self._served: dict[Worker, int] = {}
        self._started_at = time.monotonic()

    def count(self) -> int:
        """Live workers serving or loading a model (spares not counted)."""
        return sum(1 for w in self._all if w.state != "dead" and w not in self._spares)

    def replicas(self, key: Key) -> int:
        """Live workers serving ``key``: its first one and its siblings."""
        first = self._workers.get(key)
        live = [w for w in [first, *self._siblings.get(key, ())] if w is not None]
        return sum(1 for w in live if w.state == "ready")

    def replica_list(self, key: Key) -> list[dict[str, Any]]:
        """The worker processes serving ``key``, one entry each (see ``ReplicaOut``)."""
        first = self._workers.get(key)
        rows = []
        for w in [first, *self._siblings.get(key, ())]:
            if w is None or w.state == "dead":
                continue
            pid = w.proc.pid if w.proc else None
            born = datetime.fromtimestamp(self._born.get(w, time.time()), timezone.utc)
            rows.append(
                {
                    "id": f"worker-{pid}",
                    "node": socket.gethostname(),
                    "node_ip": None,
                    "state": {"ready": "running", "stopping": "stopping"}.get(w.state, "starting"),
                    "started_at": born.isoformat(timespec="seconds"),
                    "requests": self._served.get(w, 0),
                    "device": w.device,
                    "pid": pid,
                }
            )
        return rows

    async def check_scaling(self, scaling: dict[str, Any]) -> str | None:
        """Any fixed count fits this machine (autoscaling is refused before asking)."""
        return None

    def target(self, model_id: str) -> int:
        """How many workers a version of this model gets: its scaling, else ``--workers``."""
        count = self._per_model.get(model_id)
        if count is None:
            scaling = self.scaling_of(model_id) if self.scaling_of else None
            count = int((scaling or {}).get("replicas") or self.workers_per_model)
            self._per_model[model_id] = count
        return count

    async def apply_scaling(self, model_id: str, scaling: dict[str, Any] | None) -> None:
        """A fixed count for the model's versions; extra workers stop, missing ones start on
        the next query."""
        count = int((scaling or {}).get("replicas") or self.workers_per_model)
        self._per_model[model_id] = count
        extra: list[Worker] = []
        for key, siblings in self._siblings.items():
            if key[0] == model_id and len(siblings) + 1 > count:
                extra += siblings[count - 1 :]
                del siblings[count - 1 :]
        await asyncio.gather(*(w.stop() for w in extra), return_exceptions=True)

    def status(self, key: Key) -> VersionStatus:
        worker = self._workers.get(key)
        if worker is not None and worker.state == "ready":
            return "ready"
        if key in self._starting:
            return "loading"
        return "failed" if key in self._failed else "idle"

    def _on_exit(self, worker: Worker, reason: ExitReason) -> None:
        self._all.discard(worker)
        self._born.pop(worker, None)
        self._served.pop(worker, None)
        self._spares.forget(worker)
        key = worker.spec.key
        siblings = self._siblings.get(key)
        if siblings is not None and worker in siblings:
            siblings.remove(worker)
        if self._workers.get(key) is worker:
            del self._workers[key]
            # A sibling takes over, so a crash of the first worker costs no reload.
            ready = [w for w in siblings or () if w.state == "ready"]
            if ready:
                self._workers[key] = ready[0]
                siblings.remove(ready[0])  # type: ignore[union-attr]
        counted = reason in ("crash", "timeout", "memory", "output", "cpu") and key[1] > 0
        if counted and not self._closing:
            self.metrics.worker_restarts.labels(worker.spec.model_id, reason).inc()

    def _new_worker(self, spec: WorkerSpec) -> Worker:
        worker = Worker(
            spec,
            device=self.device,
            threads=self.threads,
            max_pending=self.max_pending,
            on_exit=self._on_exit,
            sandbox=self.sandbox,
            watchdog=self.watchdog,
            max_output=self.max_output,
        )
        self._all.add(worker)
        self._born[worker] = time.time()
        return worker

    async def _make_room(self) -> None:
        """Stop the least recently used idle workers beyond ``max_workers``."""
        live = [w for w in self._workers.values() if w.state == "ready"]
        idle = sorted((w for w in live if w.inflight == 0), key=lambda w: w.last_used)
        for worker in idle[: max(0, len(live) + 1 - self.max_workers)]:
            log.info("%s: unloading to stay within %d workers", worker.spec.label, self.max_workers)
            await worker.stop()

    async def launch(self, spec: WorkerSpec) -> Worker:
        """Start a worker and wait until its model is loaded; raises WorkerLoadError if not."""
        if self._closing:
            raise WorkerLoadError({"stage": "worker", "message": "the server is stopping"})
        await self._make_room()
        # A version with its own environment needs that environment's interpreter.
        worker = await self._spares.take() if spec.environment is None else None
        try:
            if worker is not None:
                await worker.assign(spec)
            else:
                worker = self._new_worker(spec)
                await worker.start()
            await worker.wait_ready(self.load_timeout)
        except WorkerTimeout as exc:
            if worker is not None:
                await worker.stop()
            raise WorkerLoadError(
                {"stage": "timeout", "message": str(exc), "detail": None}
            ) from None
        except WorkerLoadError:
            if worker is not None:
                await worker.stop()
            raise
        except BaseException as exc:
            if worker is not None:
                await worker.stop()
            if isinstance(exc, Exception):
                message = f"the worker did not start: {exc}"
                raise WorkerLoadError({"stage": "worker", "message": message}) from exc
            raise
        finally:
            # After the load, so a replacement's torch import does not slow the load down.
            self._spares.refill()
        log.info("%s: worker %s ready", spec.label, worker.proc.pid if worker.proc else "?")
        return worker

    def adopt(self, worker: Worker, key: Key) -> None:
        """Keep a worker started for a load check as the worker of the version it became."""
        worker.spec = WorkerSpec(key[0], key[1], worker.spec.files, worker.spec.manifest_json)
        old = self._workers.get(key)
        worker.last_used = time.monotonic()
        self._workers[key] = worker
        self._failed.pop(key, None)
        if old is not None and old is not worker:
            asyncio.get_running_loop().create_task(old.stop())

    def _pick(self, first: Worker, key: Key) -> Worker:
        """The ready worker with the fewest requests in flight; starts missing siblings."""
        siblings = self._siblings.get(key)
        if len(siblings or ()) + 1 < self.target(key[0]):
            self._grow(key, first)
        if not siblings or first.inflight == 0:
            return first
        best = first
        for worker in siblings:
            if worker.state == "ready" and worker.inflight < best.inflight:
                best = worker
        return best

    def _grow(self, key: Key, first: Worker) -> None:
        if self._closing or key in self._growing or time.monotonic() < self._grow_after.get(key, 0):
            return
        task = asyncio.get_running_loop().create_task(self._add_sibling(key, first.spec))
        self._growing[key] = task

    async def _add_sibling(self, key: Key, spec: WorkerSpec) -> None:
        try:
            worker = await self.launch(spec)
        except WorkerLoadError as exc:
            log.warning("%s: an extra worker did not start: %s", spec.label, exc)
            self._grow_after[key] = time.monotonic() + 30.0
            return
        finally:
            self._growing.pop(key, None)
        if self._closing or self._workers.get(key) is None:
            await worker.stop()
            return
        worker.last_used = time.monotonic()
        self._siblings.setdefault(key, []).append(worker)

    async def get(self, key: Key, spec: Callable[[], WorkerSpec]) -> Worker:
        worker = self._workers.get(key)
        if worker is not None and worker.state == "ready":
            if self.target(key[0]) > 1:
                return self._pick(worker, key)
            return worker
        task = self._starting.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._start(key, spec()))
            self._starting[key] = task
        return await asyncio.shield(task)

    async def warm(self, key: Key, spec: Callable[[], WorkerSpec]) -> None:
        await self.get(key, spec)

    def start_standby(self) -> None:
        """At server start: the first upload's load check should not wait for a torch import.
        With no model loaded, the standby still goes after one idle period."""
        self._spares.refill()

    async def _start(self, key: Key, spec: WorkerSpec) -> Worker:
        try:
            worker = await self.launch(spec)
        except WorkerLoadError as exc:
            self._failed[key] = exc.error
            raise
        finally:
            self._starting.pop(key, None)
        self._failed.pop(key, None)
        # Idle time counts from now: a load slower than --idle-unload must not make the new
        # worker look idle (and get reaped) before the request that started it reaches it.
        worker.last_used = time.monotonic()
        self._workers[key] = worker
        return worker

    async def predict(
        self, key: Key, spec: Callable[[], WorkerSpec], instances: list[Any]
    ) -> list[Any]:
        worker = await self.get(key, spec)
        self._served[worker] = self._served.get(worker, 0) + 1
        return await worker.predict(instances, self.predict_timeout)

    async def open_stream(
        self,
        key: Key,
        spec: Callable[[], WorkerSpec],
        instance: Any,
        chunk_timeout: float,
        total_timeout: float,
    ) -> AsyncIterator[Any]:
        """The chunks of the model's ``predict_stream(instance)``, once a worker is ready."""
        worker = await self.get(key, spec)
        if not worker.can_stream:
            raise StreamUnsupported(f"{worker.spec.label} has no predict_stream method")
        if worker.inflight >= self.max_pending:
            raise WorkerBusy(f"{worker.inflight} requests are already waiting for this model")
        self._served[worker] = self._served.get(worker, 0) + 1
        return worker.streams.run(instance, chunk_timeout, total_timeout)

    async def stop_where(self, match: Callable[[Key], bool]) -> None:
        workers = [w for k, w in self._workers.items() if match(k)]
        for key in [k for k in self._siblings if match(k)]:
            workers += self._siblings.pop(key)
        for key in [k for k in self._growing if match(k)]:
            self._growing.pop(key).cancel()
        for key in [k for k in self._failed if match(k)]:
            del self._failed[key]
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)

    async def stop_model(self, model_id: str, version: int | None = None) -> None:
        if version is None:
            self._per_model.pop(model_id, None)
        await self.stop_where(lambda k: k[0] == model_id and version in (None, k[1]))

    async def refresh(self) -> None:
        """Worker counts are always current here; Ray's need asking."""

    async def reap_idle(self) -> None:
        now = time.monotonic()
        candidates = [*self._workers.values()]
        for siblings in self._siblings.values():
            candidates += siblings
        idle = [
            w
            for w in candidates
            if w.state == "ready" and w.inflight == 0 and now - w.last_used >= self.idle_unload
        ]
        for worker in idle:
            log.info("%s: unloading after %.0f s idle", worker.spec.label, now - worker.last_used)
            await worker.stop()
        quiet = now - self._started_at >= self.idle_unload
        if quiet and not self._workers and not self._starting and len(self._spares):
            await self._spares.stop_all()

    async def close(self) -> None:
        self._closing = True
        for growing in list(self._growing.values()):
            growing.cancel()
        await self._spares.settle()
        for task in list(self._starting.values()):
            task.cancel()
        await asyncio.gather(*(w.stop() for w in list(self._all)), return_exceptions=True)
        if self.watchdog is not None:
            await self.watchdog.close()
        if self.sandbox is not None:
            self.sandbox.close()
        for task in list(self._starting.values()):
            with contextlib.suppress(BaseException):
                await task
