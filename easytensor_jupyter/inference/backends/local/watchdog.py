"""Worker limits that need watching: memory (``--worker-memory-mb``) and idle CPU
(``--worker-idle-cpu``), polled over each worker's whole process tree.

``RLIMIT_AS`` is no use here: torch reserves far more address space than it touches, so a cap
on virtual memory breaks an honest model long before it uses its share of RAM, and a failed
allocation inside a C library does not always surface as a clean Python error. So the limit is
on resident memory, read a few times a second; a worker above it is killed (its whole tree)
and its requests are answered with an error that names the limit. The next query starts a
fresh worker.

What is counted is the worker's whole tree, so a forked child cannot hold memory outside the
limit: with a cgroup, the cgroup's anonymous and tmpfs memory (and the kernel's own hard limit
a little above ours catches whatever a poll is too slow to see); without one, the sum over the
processes below the worker's first process. A forked child shares pages with its parent, so
when the tree has more than one large process each is counted by its proportional share
(``Pss``), not its ``Rss``, or an honest fork would count twice.

Idle CPU: a worker with no request in flight should not compute. One that uses more than
``--worker-idle-cpu`` CPU seconds within 10 s while idle is replaced: this stops a thread
left running after the answer even where no cgroup can set a CPU quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Protocol

__all__ = ["Watchdog", "Watched", "rss_bytes", "tree_cpu_seconds", "tree_memory", "tree_pids"]

log = logging.getLogger("easytensor.workers")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_LARGE = 32 << 20
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_bytes(pid: int) -> int | None:
    """Resident memory of one process, or None if it is gone (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def _pss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return rss_bytes(pid) or 0


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every process below it, from ``/proc/PID/task/TID/children``."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree_memory(pid: int) -> int | None:
    """Memory held by ``pid``'s whole tree, or None once its first process is gone."""
    if rss_bytes(pid) is None:
        return None
    sizes = {p: rss_bytes(p) or 0 for p in tree_pids(pid)}
    if sum(size > _LARGE for size in sizes.values()) <= 1:
        return sum(sizes.values())
    return sum(_pss_bytes(p) for p in sizes)


class Watched(Protocol):
    """What the watchdog asks of a worker."""

    @property
    def label(self) -> str: ...

    def memory_used(self) -> int | None: ...

    def cpu_seconds(self) -> float | None: ...

    def idle(self) -> bool: ...

    def over_memory(self, used: int) -> None: ...

    def over_idle_cpu(self, used: float) -> None: ...


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of ``pid``'s tree: its live processes and the children they have reaped."""
    total = 0
    for current in tree_pids(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            if current == pid:
                return None
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / _TICKS


class Watchdog:
    """Replaces a worker whose tree passes ``memory_bytes``, or that keeps computing with no
    request in flight: more than ``idle_cpu`` CPU seconds within ``IDLE_WINDOW`` seconds
    (a thread the model left running after its answer, a miner)."""

    IDLE_WINDOW = 10.0

    def __init__(
        self,
        memory_bytes: int | None,
        idle_cpu: float | None = None,
        interval: float = 0.1,
    ) -> None:
        self.limit_bytes = memory_bytes or 0
        self.idle_cpu = idle_cpu
        self.interval = interval
        self._watched: weakref.WeakKeyDictionary[Watched, deque[tuple[float, float]]]
        self._watched = weakref.WeakKeyDictionary()
        self._task: asyncio.Task[None] | None = None
        self._next_cpu = 0.0
        self.kills = 0

    @property
    def limit_mb(self) -> float:
        return self.limit_bytes / (1 << 20)

    def watch(self, worker: Watched) -> None:
        self._watched[worker] = deque()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def forget(self, worker: Watched) -> None:
        self._watched.pop(worker, None)

    def check(self, now: float | None = None) -> None:
        """One pass over the watched workers; public so tests can drive it."""
        now = time.monotonic() if now is None else now
        sample_cpu = self.idle_cpu is not None and now >= self._next_cpu
        if sample_cpu:
            self._next_cpu = now + 0.5
        for worker, samples in list(self._watched.items()):
            if self.limit_bytes:
                used = worker.memory_used()
                if used is None:
                    self._watched.pop(worker, None)
                    continue
                if used > self.limit_bytes:
                    self._watched.pop(worker, None)
                    self.kills += 1
                    log.warning(
                        "%s: the worker uses %.0f MB, over the %.0f MB limit: replacing it",
                        worker.label,
                        used / (1 << 20),
                        self.limit_mb,
                    )
                    worker.over_memory(used)
                    continue
            if sample_cpu:
                self._idle_cpu(worker, samples, now)

    def _idle_cpu(self, worker: Watched, samples: deque[tuple[float, float]], now: float) -> None:
        assert self.idle_cpu is not None
        cpu = worker.cpu_seconds() if worker.idle() else None
        if cpu is None:
            samples.clear()
            return
        samples.append((now, cpu))
        while len(samples) > 1 and samples[1][0] <= now - self.IDLE_WINDOW:
            samples.popleft()
        used = cpu - samples[0][1]
        if used > self.idle_cpu:
            self._watched.pop(worker, None)
            self.kills += 1
            log.warning(
                "%s: the worker used %.1f CPU seconds with no request in flight, over the %g s "
                "limit (--worker-idle-cpu); replacing it",
                worker.label,
                used,
                self.idle_cpu,
            )
            worker.over_idle_cpu(used)

    async def _run(self) -> None:
        while self._watched:
            try:
                self.check()
            except Exception:
                log.exception("worker watchdog pass failed")
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        self._watched.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
