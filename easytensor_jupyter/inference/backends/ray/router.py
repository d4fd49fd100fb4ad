"""The control plane's side of the direct path: one connection per replica, least busy first.

``update`` receives, about once a second, the replicas Ray Serve reports RUNNING joined with
their directory entries; connections open in the background, and a request goes to the open
one with the fewest requests in flight. When none is open (a new version, a directory not yet
filled) ``call`` returns None and the backend uses Serve's handle instead. A replica that Serve
stops drops out of the table before it stops (Serve waits ``graceful_shutdown_wait_loop_s``
first), so its connection only finishes what it has; one that dies fails its requests with
``WorkerRestarted`` (503 with Retry-After), and is not dialled again while Serve still lists it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any, Literal

from easytensor_jupyter.inference.backends.errors import WorkerRestarted, WorkerTimeout
from easytensor_jupyter.inference.backends.ray.wire import AUTH_LIMIT, FrameError, frame, read_frame

__all__ = ["DirectRouter", "Link"]

log = logging.getLogger("easytensor.ray")
_CONNECT_S = 3.0


class Link:
    """One authenticated connection to one replica."""

    def __init__(self, replica_id: str, entry: dict[str, Any], on_dead: Callable[[Link], None]):
        self.replica_id = replica_id
        self.address = (str(entry["host"]), int(entry["port"]), str(entry["token"]))
        self.state: Literal["connecting", "open", "draining", "dead"] = "connecting"
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self._on_dead = on_dead
        self._ids = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        host, port, token = self.address
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), _CONNECT_S)
            writer.write(frame({"token": token}))
            ack = await asyncio.wait_for(read_frame(reader, AUTH_LIMIT), _CONNECT_S)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, FrameError) as exc:
            log.info("replica %s at %s:%d: %s", self.replica_id, host, port, exc or "timeout")
            self._die("it could not be reached")
            return
        if ack != {"ok": True} or self.state == "dead":
            writer.close()
            self._die("it refused the connection")
            return
        self._writer = writer
        self.state = "open"
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    def send(self, instances: list[Any]) -> tuple[int, asyncio.Future[bytes]]:
        assert self._writer is not None
        request_id = next(self._ids)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        self._writer.write(frame([request_id, instances]))
        return request_id, future

    async def _read(self, reader: asyncio.StreamReader) -> None:
        reason = "its connection closed"
        try:
            while True:
                message = await read_frame(reader)
                if not isinstance(message, list) or len(message) != 2:
                    reason = "it sent a malformed frame"
                    return
                request_id, reply = message
                if request_id == 0:
                    self.state = "draining"
                    continue
                future = self.pending.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except (asyncio.IncompleteReadError, OSError, FrameError) as exc:
            reason = f"its connection closed: {type(exc).__name__}"
        finally:
            self._die(reason)

    def _die(self, reason: str) -> None:
        if self.state == "dead":
            return
        self.state = "dead"
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(
                    WorkerRestarted(f"the replica serving this request died ({reason})")
                )
        self.close()
        self._on_dead(self)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None and self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()


class DirectRouter:
    def __init__(self) -> None:
        self._links: dict[str, dict[str, Link]] = {}
        self._dead: set[str] = set()
        self._turn = itertools.count()
        self._opening: set[asyncio.Task[None]] = set()

    def update(self, table: dict[str, dict[str, dict[str, Any]]]) -> None:
        """The reachable replicas, by application and replica id (entries from the directory)."""
        listed = {rid for replicas in table.values() for rid in replicas}
        self._dead &= listed
        for app in set(self._links) | set(table):
            links = self._links.setdefault(app, {})
            wanted = table.get(app, {})
            for rid, link in list(links.items()):
                entry = wanted.get(rid)
                same = entry is not None and link.address == (
                    str(entry["host"]),
                    int(entry["port"]),
                    str(entry["token"]),
                )
                if link.state == "dead" or not same:
                    del links[rid]
                    if link.pending:
                        link.state = "draining"
                    else:
                        link.close()
            for rid, entry in wanted.items():
                if rid not in links and rid not in self._dead:
                    link = Link(rid, entry, self._died)
                    links[rid] = link
                    task = asyncio.get_running_loop().create_task(link.open())
                    self._opening.add(task)
                    task.add_done_callback(self._opening.discard)
            if not links:
                del self._links[app]

    def _died(self, link: Link) -> None:
        self._dead.add(link.replica_id)
        for links in self._links.values():
            if links.get(link.replica_id) is link:
                del links[link.replica_id]

    def open_links(self, app: str) -> int:
        return len(self.reached(app))

    def reached(self, app: str) -> set[str]:
        """Replicas of ``app`` with an open connection."""
        return {rid for rid, link in self._links.get(app, {}).items() if link.state == "open"}

    def _pick(self, app: str) -> Link | None:
        best: Link | None = None
        links = list(self._links.get(app, {}).values())
        if not links:
            return None
        start = next(self._turn) % len(links)
        for link in links[start:] + links[:start]:
            if link.state == "open" and (best is None or len(link.pending) < len(best.pending)):
                best = link
        return best

    async def call(
        self, app: str, instances: list[Any], timeout: float, limit: float
    ) -> bytes | None:
        """The replica's reply bytes, or None when no replica of ``app`` is reachable directly.

        The worker stops a prediction at ``limit``; ``timeout``, a little later, covers a
        replica that never answers.
        """
        link = self._pick(app)
        if link is None:
            return None
        request_id, future = link.send(instances)

        def expire() -> None:
            if link.pending.pop(request_id, None) is future and not future.done():
                future.set_exception(WorkerTimeout(f"the prediction took longer than {limit:g} s"))

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await future
        finally:
            timer.cancel()

    async def close(self) -> None:
        for task in list(self._opening):
            task.cancel()
        for links in self._links.values():
            for link in links.values():
                link.close()
        self._links.clear()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
