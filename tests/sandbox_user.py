"""Run a command as a fresh normal user, for the tests of a server started by a normal user.

CI runs as root, so ``make_user`` adds a throwaway account (``useradd``) and ``remove_user``
deletes it with its home. ``python tests/sandbox_user.py USER -- COMMAND...`` (run as root)
becomes USER and execs COMMAND with the same pid. Where the Python the tests run on lives in a
folder other users cannot enter (pyenv under ``/root``), it first makes a private mount
namespace in which only that Python is reachable there: the host stays as it was, and the
server under test sees a machine on which Python is installed where a normal user can run it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

__all__ = ["make_user", "remove_user", "user_prefix"]

_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
REPO = Path(__file__).resolve().parent.parent


def make_user() -> pwd.struct_passwd:
    name = f"etsbx{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def _processes_of(uid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            lines = status.read_text().splitlines()
            real = next(line for line in lines if line.startswith("Uid:")).split()[1]
            if int(real) == uid:
                found.append(int(status.parent.name))
    return found


def remove_user(user: pwd.struct_passwd) -> None:
    """Kill whatever still runs as the user (its server is stopped already), then delete it."""
    deadline = time.monotonic() + 10
    while (left := _processes_of(user.pw_uid)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    subprocess.run(["userdel", "--remove", user.pw_name], check=True, capture_output=True)


def user_prefix(user: pwd.struct_passwd) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), user.pw_name, "--"]


def _blocked() -> dict[Path, set[Path]]:
    """Folders others cannot enter on the way to what the server needs, and the child of
    each that must stay reachable."""
    needed = {Path(os.path.realpath(p)) for p in (sys.base_prefix, sys.prefix, REPO)}
    blocked: dict[Path, set[Path]] = {}
    for path in needed:
        for parent in reversed(path.parents):
            if parent != Path("/") and not parent.stat().st_mode & 0o001:
                child = path.relative_to(parent).parts[0]
                blocked.setdefault(parent, set()).add(parent / child)
                break
    return blocked


def _open_up(blocked: dict[Path, set[Path]]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), what)

    check(libc.unshare(_CLONE_NEWNS), "unshare")
    check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "private /")
    for folder, keep in blocked.items():
        fds = {child: os.open(child, os.O_PATH) for child in keep}
        check(libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs", 0, b"mode=0755"), "tmpfs")
        for child, fd in fds.items():
            child.mkdir()
            source = f"/proc/self/fd/{fd}".encode()
            check(libc.mount(source, str(child).encode(), None, _MS_BIND | _MS_REC, None), "bind")
            os.close(fd)


def main(argv: list[str]) -> int:
    user = pwd.getpwnam(argv[0])
    command = argv[2:]
    blocked = _blocked()
    if blocked:
        _open_up(blocked)
    os.setgroups([])
    os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
    os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
    env = {**os.environ, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}
    os.chdir(user.pw_dir)
    os.execvpe(command[0], command, env)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
