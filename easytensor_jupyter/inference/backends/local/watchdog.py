"""The worker memory limit (``--worker-memory-mb``): poll each worker's resident memory.

``RLIMIT_AS`` is no use here: torch reserves far more address space than it touches, so a cap
on virtual memory breaks an honest model long before it uses its share of RAM, and a failed
allocation inside a C library does not always surface as a clean Python error. So the limit is
on resident memory, read from ``/proc`` a few times a second; a worker above it is killed (its
whole process group) and its requests are answered with an error that names the limit. The
next query starts a fresh worker. Between two polls a worker may overshoot by what it can
allocate in one interval; that is the price of not crippling torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import Callable
from pathlib import Path

__all__ = ["MemoryWatchdog", "rss_bytes"]

log = logging.getLogger("easytensor.workers")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int) -> int | None:
    """Resident memory of one process, or None if it is gone (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


class MemoryWatchdog:
    """Calls ``on_exceed(rss)`` on each watched worker whose memory passes ``limit_bytes``."""

    def __init__(self, limit_bytes: int, interval: float = 0.1) -> None:
        self.limit_bytes = limit_bytes
        self.interval = interval
        self._watched: weakref.WeakKeyDictionary[object, tuple[int, Callable[[int], None]]]
        self._watched = weakref.WeakKeyDictionary()
        self._task: asyncio.Task[None] | None = None
        self.kills = 0

    @property
    def limit_mb(self) -> float:
        return self.limit_bytes / (1 << 20)

    def watch(self, owner: object, pid: int, on_exceed: Callable[[int], None]) -> None:
        self._watched[owner] = (pid, on_exceed)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def forget(self, owner: object) -> None:
        self._watched.pop(owner, None)

    def check(self) -> None:
        """One pass over the watched workers; public so tests can drive it."""
        for owner, (pid, on_exceed) in list(self._watched.items()):
            rss = rss_bytes(pid)
            if rss is None:
                self._watched.pop(owner, None)
            elif rss > self.limit_bytes:
                self._watched.pop(owner, None)
                self.kills += 1
                log.warning(
                    "worker %d uses %.0f MB, over the %.0f MB limit: replacing it",
                    pid,
                    rss / (1 << 20),
                    self.limit_mb,
                )
                on_exceed(rss)

    async def _run(self) -> None:
        while self._watched:
            try:
                self.check()
            except Exception:
                log.exception("memory watchdog pass failed")
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        self._watched.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
