"""The Ray Serve deployment behind one model version.

A replica is a thin host: it copies the version's files out of Ray's object store onto its own
node, then runs the very same sandboxed worker process as the local backend (``Worker`` and
``worker_main``: import, build, load safetensors, ``predict_single`` / ``predict_batch``). Model
code therefore never runs inside a Ray process, and a replica answers only with msgpack bytes
(see ``envelope``). The sandbox is the local backend's too, with what the node allows: a raylet
run by a normal user gets the user-namespace jail and no cgroups, one run by root a uid per
worker and cgroups; each replica prints its table of protections to its log at start. Requests that arrive together are gathered by Ray Serve's own batching
when the bundle asks for batching, and handed to the worker as one batch.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ray
from ray import serve

from easytensor_jupyter.bundle import Manifest
from easytensor_jupyter.inference.backends.base import WorkerSpec
from easytensor_jupyter.inference.backends.errors import WorkerError, WorkerLoadError
from easytensor_jupyter.inference.backends.local.protections import describe, startup_lines
from easytensor_jupyter.inference.backends.local.sandbox import (
    Sandbox,
    sandbox_options,
    watchdog_for,
)
from easytensor_jupyter.inference.backends.local.worker import ExitReason, Worker
from easytensor_jupyter.inference.backends.ray.bundles import KEEPER_NAME
from easytensor_jupyter.inference.backends.ray.envelope import error_reply, ok_reply
from easytensor_jupyter.inference.backends.ray.leftovers import new_replica_dir
from easytensor_jupyter.inference.backends.ray.presence import Presence
from easytensor_jupyter.inference.backends.ray.streaming import replica_stream

__all__ = ["ModelReplica", "ReplicaConfig"]

ReplicaConfig = dict[str, Any]
"""Plain settings from the control plane: device, threads, timeouts, sandbox options."""


def _write_files(app: str, namespace: str, directory: Path) -> dict[str, Path]:
    """Copy the version's files from the object store onto this node, chunk by chunk."""
    keeper = ray.get_actor(KEEPER_NAME, namespace=namespace)
    files: Any = ray.get(keeper.files.remote(app))
    if files is None:
        raise FileNotFoundError(
            f"the cluster no longer holds this version's files ({app}); upload the model again"
        )
    paths = {}
    for name, chunks in files.items():
        path = directory / name
        with path.open("wb") as out:
            for (ref,) in chunks:
                out.write(ray.get(ref))
        paths[name] = path
    return paths


@serve.deployment(name="model")
class ModelReplica:
    async def __init__(  # type: ignore[misc]
        self, app: str, label: str, manifest_json: bytes, cfg: ReplicaConfig
    ) -> None:
        self.load_error: dict[str, Any] | None = None
        self.presence = Presence(app, cfg["namespace"], cfg["device"])
        self.dir = await asyncio.to_thread(new_replica_dir)
        self.timeout = float(cfg["predict_timeout"])
        manifest = Manifest.model_validate_json(manifest_json)
        self.batching = manifest.batching
        if manifest.batching is not None:
            # Ray Serve does the waiting; the worker only splits into predict_batch calls.
            self.batched.set_max_batch_size(manifest.batching.max_batch_size)  # type: ignore[attr-defined]
            wait_s = manifest.batching.max_wait_ms / 1000.0
            self.batched.set_batch_wait_timeout_s(wait_s)  # type: ignore[attr-defined]
            manifest.batching.max_wait_ms = 0.0
        try:
            paths = await asyncio.to_thread(_write_files, app, cfg["namespace"], self.dir)
        except (OSError, ray.exceptions.RayError) as exc:
            self.load_error = {"stage": "files", "message": str(exc)}
            self.presence.failed(self.load_error)
            return
        resolved = sandbox_options(cfg["worker"])
        self.sandbox = Sandbox(resolved) if cfg["sandbox"] else None
        self.watchdog = watchdog_for(resolved)
        self.max_output = int(resolved.max_output_mb * (1 << 20))
        for line in startup_lines(describe(self.sandbox, resolved)):
            print(f"{label}: {line}", file=sys.stderr, flush=True)
        self.spec = WorkerSpec(label, 1, paths, manifest.to_json_bytes())
        self.cfg = cfg
        self.restarting = asyncio.Lock()
        self.worker = self._new_worker()
        try:
            await self._start(self.worker)
        except WorkerLoadError as exc:
            self.load_error = exc.error
        except (WorkerError, OSError) as exc:
            self.load_error = {"stage": "worker", "message": f"the worker did not start: {exc}"}
        await self.presence.ready(self.__call__, self.load_error)

    def _new_worker(self) -> Worker:
        return Worker(
            self.spec,
            device=self.cfg["device"],
            threads=self.cfg["threads"],
            max_pending=self.cfg["max_pending"],
            on_exit=self._on_exit,
            sandbox=self.sandbox,
            watchdog=self.watchdog,
            max_output=self.max_output,
        )

    async def _start(self, worker: Worker) -> None:
        await worker.start()
        await worker.wait_ready(float(self.cfg["load_timeout"]))

    def _on_exit(self, worker: Worker, reason: ExitReason) -> None:
        """Nothing here: the next request starts a fresh worker (``_live_worker``)."""

    async def _live_worker(self) -> Worker:
        """The worker, restarted in place after a crash or a timeout, as the local backend
        does; only if that fails does ``check_health`` hand the replica back to Ray Serve."""
        if self.worker.state not in ("dead", "stopping"):
            return self.worker
        async with self.restarting:
            if self.worker.state in ("dead", "stopping"):
                worker = self._new_worker()
                try:
                    await self._start(worker)
                except (WorkerError, OSError):
                    await worker.stop()
                    raise
                self.worker = worker
        return self.worker

    async def load_status(self) -> bytes:
        return error_reply(self.load_error) if self.load_error else ok_reply([])

    async def __call__(self, instances: list[Any]) -> bytes:
        self.presence.served += 1
        if self.load_error is not None:
            return error_reply(self.load_error)
        try:
            if self.batching is not None:
                results = await self.batched(instances)
            else:
                worker = await self._live_worker()
                results = await worker.predict(instances, self.timeout)
        except (WorkerError, OSError) as exc:
            return error_reply(exc)
        return ok_reply(results)

    async def stream(
        self, instance: Any, chunk_timeout: float, total_timeout: float
    ) -> AsyncIterator[bytes]:
        """The model's ``predict_stream(instance)`` as msgpack items (see ``streaming``)."""
        self.presence.served += 1
        items = replica_stream(
            self._live_worker, instance, chunk_timeout, total_timeout, self.load_error
        )
        async for item in items:
            yield item

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def batched(self, requests: list[list[Any]]) -> list[list[Any]]:
        flat = [x for request in requests for x in request]
        worker = await self._live_worker()
        results = await worker.predict(flat, self.timeout)
        out, start = [], 0
        for request in requests:
            out.append(results[start : start + len(request)])
            start += len(request)
        return out

    async def check_health(self) -> None:
        if self.load_error is None:
            try:
                await self._live_worker()
            except (WorkerError, OSError) as exc:
                raise RuntimeError(f"the model's worker cannot be restarted: {exc}") from None

    def __del__(self) -> None:
        presence = getattr(self, "presence", None)
        if presence is not None:
            presence.close()
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.kill("stopped")
        sandbox = getattr(self, "sandbox", None)
        if sandbox is not None:
            sandbox.close()
        shutil.rmtree(getattr(self, "dir", ""), ignore_errors=True)
