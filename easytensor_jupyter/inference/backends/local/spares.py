"""Spare workers: processes that have imported torch (in their sandbox) and wait for a model.

Importing torch takes a worker one to two seconds; a load that finds a spare only imports the
model. Each load takes one spare and a replacement starts, so a notebook that deploys twice in
a row finds the second one ready too when the pool keeps two. Replacements start one at a
time, so a deploy running meanwhile keeps a core, and a spare that fails to start is not
retried until the next load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from easytensor_jupyter.inference.backends.local.worker import Worker

__all__ = ["Spares"]


class Spares:
    def __init__(
        self, make: Callable[[], Worker], want: int, discard: Callable[[Worker], None]
    ) -> None:
        self._make = make
        self._discard = discard
        self._stopping: set[asyncio.Task[None]] = set()
        self.want = max(0, want)
        self.closing = False
        self._tasks: dict[Worker, asyncio.Task[None]] = {}

    def __contains__(self, worker: object) -> bool:
        return worker in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def refill(self) -> None:
        """Start one more spare when there are fewer than ``want`` and none is starting."""
        if self.closing or len(self._tasks) >= self.want:
            return
        if any(not task.done() for task in self._tasks.values()):
            return
        worker = self._make()
        task = asyncio.get_running_loop().create_task(worker.start(standby=True))
        self._tasks[worker] = task
        task.add_done_callback(lambda done: self._started(worker, done))

    def _started(self, worker: Worker, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is None and worker.state == "standby":
            self.refill()
            return
        if self._tasks.pop(worker, None) is not None:
            stopping = asyncio.get_running_loop().create_task(worker.stop())
            self._stopping.add(stopping)
            stopping.add_done_callback(self._stopping.discard)
            self._discard(worker)

    def forget(self, worker: Worker) -> None:
        """The worker exited (or was taken): it is no spare any more."""
        self._tasks.pop(worker, None)

    async def take(self) -> Worker | None:
        """A spare that is ready, else the one still starting, else None."""
        ready = [w for w, t in self._tasks.items() if t.done() and w.state == "standby"]
        if ready:
            self._tasks.pop(ready[0])
            return ready[0]
        for worker, task in list(self._tasks.items()):
            if task.done():
                continue
            with contextlib.suppress(Exception):
                await task
            if self._tasks.pop(worker, None) is None or worker.state != "standby":
                return None  # it failed; _started stopped it
            return worker
        return None

    async def stop_all(self) -> None:
        """No model is loaded and the server is quiet: spares go too."""
        workers, self._tasks = list(self._tasks), {}
        for worker in workers:
            await worker.stop()

    async def settle(self) -> None:
        """At close: let starting spares finish their start so they can be stopped cleanly."""
        self.closing = True
        for task in list(self._tasks.values()):
            with contextlib.suppress(BaseException):
                await task
