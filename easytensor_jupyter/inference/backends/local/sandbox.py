"""Confine a worker process before it runs model code: namespaces, another uid, rlimits.

Model code is untrusted, so a worker must not reach the admin key, the store, other models'
files or the network. The server starts each worker through this module as a trampoline
(``python -m easytensor_jupyter.inference.backends.local.sandbox POLICY -- python -m ...worker_main ...``):
it applies the policy to itself, then ``execv``s the worker, which keeps its pid.

Why a trampoline and not ``preexec_fn``: the server has threads, and Python code between
``fork`` and ``exec`` can deadlock on a lock another thread held; here the confinement runs in
a fresh single-threaded interpreter.

What it does, Linux only, best effort; everything it could not do is reported on stderr (the
server log) so nothing is silently weaker than asked:

* a new mount namespace where the store, ``EASYTENSOR_HOME``, the server user's home (when the
  worker changes uid) and the temp folder are covered by empty tmpfs mounts, with only the paths
  the worker needs (the interpreter, ``sys.path``, its own folder) bound back in;
* a new network namespace with only a loopback that is down, unless the network is allowed;
* when the server runs as root: another uid/gid (``nobody`` by default), no supplementary groups,
  ``no_new_privs``; when not root: an unprivileged user namespace does the two above if the
  kernel allows it, and the worker keeps the server's uid;
* rlimits: open files, core dumps off, and CPU seconds when asked.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import resource
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

__all__ = ["SandboxPolicy", "apply", "build_policy", "main", "resolve_user", "wrap_command"]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_NO_NEW_PRIVS = 38
_TMP_SIZE = "64m"


@dataclass(frozen=True)
class SandboxPolicy:
    """What to apply to one worker; JSON on the trampoline's command line."""

    enabled: bool = True
    uid: int | None = None
    gid: int | None = None
    network: bool = False
    max_files: int = 1024
    cpu_seconds: int | None = None
    hide: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    tmp: str | None = None
    worker_dir: str | None = None
    notes: list[str] = field(default_factory=list, compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("notes")
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, text: str) -> SandboxPolicy:
        data = orjson.loads(text)
        data["hide"] = tuple(data.get("hide") or ())
        data["keep"] = tuple(data.get("keep") or ())
        return cls(**data)


def resolve_user(name: str | None) -> tuple[int, int] | None:
    """The uid/gid a root server drops workers to; None when not root or asked not to."""
    if os.geteuid() != 0 or name in (None, "", "root"):
        return None
    try:
        entry = pwd.getpwnam(name) if not name.isdigit() else pwd.getpwuid(int(name))
    except KeyError:
        raise ValueError(f"--worker-user {name!r} is not a user on this machine") from None
    return entry.pw_uid, entry.pw_gid


def build_policy(
    *,
    store: Path,
    home: Path,
    user: str | None,
    network: bool,
    max_files: int,
    cpu_seconds: int | None,
) -> SandboxPolicy:
    """The policy every worker of one server gets, from its command-line options."""
    ids = resolve_user(user)
    hide = [str(store), str(home)]
    if ids is not None:
        hide.append(str(Path.home()))
    return SandboxPolicy(
        uid=ids[0] if ids else None,
        gid=ids[1] if ids else None,
        network=network,
        max_files=max_files,
        cpu_seconds=cpu_seconds,
        hide=tuple(hide),
        tmp=tempfile.gettempdir(),
    )


def _needed_paths(extra: Iterable[str]) -> list[str]:
    """What a worker must still see: the interpreter, its libraries, sys.path, ``extra``."""
    wanted = {sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(sys.executable).parent)}
    wanted.update(p for p in sys.path if p)
    wanted.update(extra)
    found = set()
    for raw in wanted:
        path = os.path.realpath(raw)
        if Path(path).exists() and path != "/":
            found.add(path)
    return sorted(found)


def wrap_command(
    command: Sequence[str], policy: SandboxPolicy, worker_dir: Path, package_root: str
) -> list[str]:
    """The trampoline command that confines, then becomes, ``command``."""
    if not policy.enabled or sys.platform != "linux":
        return list(command)
    full = SandboxPolicy(
        enabled=True,
        uid=policy.uid,
        gid=policy.gid,
        network=policy.network,
        max_files=policy.max_files,
        cpu_seconds=policy.cpu_seconds,
        hide=policy.hide,
        keep=tuple(_needed_paths([*policy.keep, package_root, str(worker_dir)])),
        tmp=policy.tmp,
        worker_dir=str(worker_dir),
    )
    module = "easytensor_jupyter.inference.backends.local.sandbox"
    return [sys.executable, "-m", module, full.to_json(), "--", *command]


class _Libc:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(None, use_errno=True)
        self.lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"{what}: {os.strerror(code)}")

    def unshare(self, flags: int) -> None:
        self._check(self.lib.unshare(flags), "unshare")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int) -> None:
        self._check(
            self.lib.mount(
                source.encode() if source else None,
                target.encode(),
                fstype.encode() if fstype else None,
                flags,
                None,
            ),
            f"mount {target}",
        )

    def mount_tmpfs(self, target: str, options: str) -> None:
        result = self.lib.mount(
            b"tmpfs", target.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options.encode()
        )
        self._check(result, f"mount tmpfs on {target}")

    def no_new_privs(self) -> None:
        self._check(self.lib.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _cover(libc: _Libc, folder: str, keep: Sequence[str], writable: bool) -> None:
    """Hide ``folder`` under an empty tmpfs, binding the ``keep`` paths back in place."""
    inside = [k for k in keep if _under(k, folder) and k != folder]
    handles = [(k, os.open(k, os.O_PATH)) for k in inside]
    try:
        mode = "1777" if writable else "0755"
        libc.mount_tmpfs(folder, f"size={_TMP_SIZE if writable else '1m'},mode={mode}")
        for path, fd in handles:
            if Path(f"/proc/self/fd/{fd}").is_dir():
                Path(path).mkdir(parents=True, exist_ok=True)
            else:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).touch()
            libc.mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        if not writable:
            flags = _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
            libc.mount(None, folder, None, flags)
    finally:
        for _, fd in handles:
            os.close(fd)


def _enter_user_namespace(libc: _Libc, flags: int) -> None:
    """Unprivileged: a user namespace lets us make mount and network namespaces too."""
    uid, gid = os.getuid(), os.getgid()
    libc.unshare(_CLONE_NEWUSER | flags)
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def _hide_all(libc: _Libc, policy: SandboxPolicy, notes: list[str]) -> None:
    libc.mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    keep = list(policy.keep)
    targets = sorted({os.path.realpath(h) for h in policy.hide if Path(h).is_dir()}, key=len)
    covered: list[str] = []
    for folder in targets:
        if any(_under(folder, done) for done in covered):
            continue
        if folder == "/" or folder in keep:
            notes.append(f"{folder} not hidden: the worker needs it")
            continue
        covered.append(folder)
        try:
            _cover(libc, folder, keep, writable=False)
        except OSError as exc:
            notes.append(f"{folder} not hidden ({exc.strerror})")
    if policy.tmp and Path(policy.tmp).is_dir():
        try:
            _cover(libc, os.path.realpath(policy.tmp), keep, writable=True)
        except OSError as exc:
            notes.append(f"other workers' folders not hidden ({exc.strerror})")


def _limits(policy: SandboxPolicy, notes: list[str]) -> None:
    wanted = [(resource.RLIMIT_CORE, 0, 0), (resource.RLIMIT_NOFILE, *([policy.max_files] * 2))]
    if policy.cpu_seconds:
        wanted.append((resource.RLIMIT_CPU, policy.cpu_seconds, policy.cpu_seconds + 1))
    for which, soft, hard in wanted:
        try:
            _, current_hard = resource.getrlimit(which)
            if current_hard != resource.RLIM_INFINITY and 0 <= current_hard < hard:
                soft, hard = min(soft, current_hard), current_hard
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as exc:
            notes.append(f"rlimit {which} not set ({exc})")


def apply(policy: SandboxPolicy) -> list[str]:
    """Confine this process; returns what could not be enforced (empty when all was)."""
    notes: list[str] = []
    _limits(policy, notes)
    if sys.platform != "linux":
        return [*notes, "no namespaces: only Linux has them"]
    libc = _Libc()
    flags = _CLONE_NEWNS | (0 if policy.network else _CLONE_NEWNET)
    root = os.geteuid() == 0
    try:
        if root:
            libc.unshare(flags)
        else:
            _enter_user_namespace(libc, flags)
        _hide_all(libc, policy, notes)
    except OSError as exc:
        notes.append(
            f"no mount/network namespace ({exc.strerror or exc}): files and network are open"
        )
    if policy.uid is not None and root:
        gid = policy.gid if policy.gid is not None else policy.uid
        if policy.worker_dir:
            os.chown(policy.worker_dir, policy.uid, gid)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(policy.uid, policy.uid, policy.uid)
        os.environ["HOME"] = policy.worker_dir or "/"
    elif root:
        notes.append("the worker runs as root (--worker-user root): file permissions do not apply")
    try:
        libc.no_new_privs()
    except OSError as exc:
        notes.append(f"no_new_privs not set ({exc.strerror})")
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print(
            "usage: python -m easytensor_jupyter.inference.backends.local.sandbox POLICY -- COMMAND...",
            file=sys.stderr,
        )
        return 2
    policy = SandboxPolicy.from_json(args[0])
    for note in apply(policy):
        print(f"sandbox: {note}", file=sys.stderr, flush=True)
    command = args[2:]
    try:
        os.execv(command[0], command)
    except OSError as exc:
        print(f"sandbox: cannot start the worker: {exc}", file=sys.stderr, flush=True)
        return 126 if exc.errno == errno.EACCES else 127
    return 0


if __name__ == "__main__":
    sys.exit(main())
