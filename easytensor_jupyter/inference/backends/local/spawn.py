"""Starting a worker process without running Python in the child before it execs.

The event loop's own spawn (uvloop's) runs Python's after-fork hooks in the forked child, and
the parent waits on the event loop until that child execs. A hook that needs a lock another
server thread held at the fork (a registry write, an upload's writer) then never returns: the
child never execs and the whole server stops answering. The standard library's ``subprocess``
execs straight after ``vfork`` with no Python in between, so workers start with it, on a
thread, and their pipes and exit are then watched by the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence

__all__ = ["Child", "spawn"]

_PIPE_LIMIT = 1 << 20


class Child:
    """A started process: its pid, its output as stream readers, and ``await wait()``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdout = asyncio.StreamReader(limit=_PIPE_LIMIT)
        self.stderr = asyncio.StreamReader(limit=_PIPE_LIMIT)
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        for pipe, reader in ((self._popen.stdout, self.stdout), (self._popen.stderr, self.stderr)):
            assert pipe is not None
            protocol = asyncio.StreamReaderProtocol(reader)
            await loop.connect_read_pipe(_factory(protocol), pipe)
        self._watch_exit(loop)

    def _watch_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            waiter = threading.Thread(
                target=self._wait_blocking, args=(loop,), name=f"wait-{self.pid}", daemon=True
            )
            waiter.start()
            return

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._settle(self._popen.wait())

        loop.add_reader(pidfd, exited)

    def _wait_blocking(self, loop: asyncio.AbstractEventLoop) -> None:
        code = self._popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop closed first
            loop.call_soon_threadsafe(self._settle, code)

    def _settle(self, code: int) -> None:
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


def _factory(protocol: asyncio.Protocol) -> Callable[[], asyncio.Protocol]:
    return lambda: protocol


async def spawn(
    command: Sequence[str],
    *,
    pass_fds: Sequence[int],
    env: Mapping[str, str],
    cwd: str,
) -> Child:
    """Start ``command`` in a session of its own, stdin from /dev/null, output piped."""
    popen = await asyncio.to_thread(
        subprocess.Popen,
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=tuple(pass_fds),
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    child = Child(popen)
    try:
        await child._connect()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            popen.kill()
        raise
    return child
