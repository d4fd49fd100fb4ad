"""A replica's direct door for control planes, and its entry in the directory.

Going through Ray Serve's handle costs the control plane about 2 ms of CPU per request (its
router picks a replica and makes a Ray actor call). Once its model has loaded, a replica also
opens a ``Door`` on its node's address, and answers there with the same envelope bytes as
through Serve; Serve still starts, checks, scales and replaces the replica. ``Presence`` tells
the directory, every few seconds, where that door is and how the replica is doing (see
``directory``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray
from ray import serve

from easytensor_jupyter.inference.backends.ray.directory import BEAT_S, directory
from easytensor_jupyter.inference.backends.ray.door import Door, Handler

__all__ = ["Presence"]

log = logging.getLogger("easytensor.ray")


class Presence:
    """Created first thing in a replica's ``__init__``; ``ready`` once the model loaded."""

    def __init__(self, app: str, namespace: str, device: str) -> None:
        self.app = app
        self.namespace = namespace
        self.device = device
        self.served = 0
        self.state = "starting"
        self.error: str | None = None
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        self.node_id = ray.get_runtime_context().get_node_id()
        self.host = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
        self.started = time.time()
        self.door: Door | None = None
        self._directory: Any = None
        self._beating = asyncio.get_running_loop().create_task(self._beat_forever())

    def info(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "host": self.host,
            "port": self.door.port if self.door else None,
            "token": self.door.token if self.door else None,
            "state": self.state,
            "error": self.error,
            "served": self.served,
            "device": self.device,
            "started": self.started,
        }

    def failed(self, error: dict[str, Any]) -> None:
        """The model did not load: the replica answers that error through Serve only."""
        self.state = "failed"
        self.error = str(error.get("message") or error)

    async def ready(self, handler: Handler, load_error: dict[str, Any] | None) -> None:
        if load_error is not None:
            self.failed(load_error)
        else:
            self.door = Door(handler, self.app)
            await self.door.open(self.host)
            self.state = "running"
        await self._beat()

    def close(self) -> None:
        """Stop beating and listening, tell peers and the directory; safe to call twice."""
        self._beating.cancel()
        if self.door is not None:
            self.door.close()
        if self._directory is not None:
            with contextlib.suppress(Exception):
                self._directory.leave.remote(self.app, self.replica_id)

    async def _beat(self) -> None:
        try:
            if self._directory is None:
                self._directory = await asyncio.to_thread(directory, self.namespace)
            await self._directory.beat.remote(self.app, self.replica_id, self.info())
        except Exception as exc:  # the directory restarting: the next beat tries again
            self._directory = None
            log.warning("%s: cannot reach the replica directory: %s", self.app, exc)

    async def _beat_forever(self) -> None:
        while True:
            await self._beat()
            await asyncio.sleep(BEAT_S)
