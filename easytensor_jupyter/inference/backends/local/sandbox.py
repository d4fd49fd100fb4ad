"""The worker sandbox: what this machine lets us enforce, and the jail each worker starts in.

Model code is untrusted. A worker starts as ``[sh: join cgroups] bwrap ... [setpriv] python -m
...worker_main``; ``bwrap.py`` says what the worker sees, ``cgroups.py`` what it may use. This
module decides, once per server, which of those work here (bubblewrap installed and allowed to
make namespaces, ``setpriv`` present, cgroups writable), hands every worker its own uid when the
server is root, and reports each protection as on or off with the reason, both at start-up
and in ``easytensor serve --sandbox-report`` (``protections.py``).

Each worker's uid comes from ``--worker-uids`` and is held with a lock file under ``/run``, so
two servers on one machine never hand out the same one; uids that have an account are skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easytensor_jupyter.inference.backends.local import bwrap
from easytensor_jupyter.inference.backends.local.cgroups import (
    CgroupLimits,
    Cgroups,
    WorkerCgroup,
    join_script,
)
from easytensor_jupyter.inference.backends.local.watchdog import Watchdog
from easytensor_jupyter.inference.backends.local.workdir import (
    check_env_names,
    run_folder,
    sandbox_env,
)

__all__ = [
    "DEFAULT_UIDS",
    "WORKER_FIELDS",
    "Jail",
    "Sandbox",
    "SandboxOptions",
    "default_memory_mb",
    "sandbox_options",
    "validate",
    "watchdog_for",
]

log = logging.getLogger("easytensor.workers")
DEFAULT_UIDS = (0x70000000, 0x7000FFFF)
_MEMORY_HEADROOM = 0.25


def default_memory_mb() -> float:
    """Half the machine's memory: one runaway model cannot take the server down with it."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 4096.0
    return float(total // 2 >> 20)


@dataclass(frozen=True)
class SandboxOptions:
    """The sandbox settings of one server (``ServeOptions`` resolved: no "auto" left)."""

    network: bool = False
    max_files: int = 1024
    cpu_seconds: int | None = None
    max_procs: int = 256
    memory_mb: float | None = None
    idle_cpu: float | None = 5.0
    cpus: float | None = None
    tmp_mb: float = 256.0
    max_output_mb: float = 64.0
    uids: tuple[int, int] = DEFAULT_UIDS
    env: tuple[str, ...] = ()
    binds: tuple[str, ...] = ()
    device: str = "cpu"
    threads: int = 1


WORKER_FIELDS = (
    "worker_uids",
    "worker_network",
    "worker_memory_mb",
    "worker_idle_cpu",
    "worker_cpus",
    "worker_cpu_seconds",
    "worker_max_files",
    "worker_max_procs",
    "worker_tmp_mb",
    "worker_max_output_mb",
    "worker_env",
    "worker_bind",
    "device",
    "threads",
)


def sandbox_options(values: Mapping[str, Any]) -> SandboxOptions:
    """``ServeOptions``' worker fields (``WORKER_FIELDS``, as a plain mapping, which is also
    how a Ray replica gets them) with the defaults resolved on this machine."""
    memory, cpus, threads = values["worker_memory_mb"], values["worker_cpus"], values["threads"]
    first, last = values["worker_uids"]
    return SandboxOptions(
        network=bool(values["worker_network"]),
        max_files=int(values["worker_max_files"]),
        cpu_seconds=values["worker_cpu_seconds"],
        max_procs=int(values["worker_max_procs"]),
        memory_mb=default_memory_mb() if memory is None else (float(memory) or None),
        idle_cpu=float(values["worker_idle_cpu"]) or None,
        cpus=float(threads) if cpus is None else (float(cpus) or None),
        tmp_mb=float(values["worker_tmp_mb"]),
        max_output_mb=float(values["worker_max_output_mb"]),
        uids=(int(first), int(last)),
        env=tuple(values["worker_env"]),
        binds=tuple(values["worker_bind"]),
        device=str(values["device"]),
        threads=int(threads),
    )


def watchdog_for(options: SandboxOptions) -> Watchdog | None:
    """The watchdog of a server's workers, when a memory or idle-CPU limit is asked for."""
    if not options.memory_mb and not options.idle_cpu:
        return None
    memory = int(options.memory_mb * (1 << 20)) if options.memory_mb else None
    return Watchdog(memory, options.idle_cpu)


def validate(values: Mapping[str, Any]) -> str | None:
    """Why these worker settings cannot work, in the words of the options; None when fine."""
    first, last = values["worker_uids"]
    if not 0 < first <= last < 0xFFFFFFFF:
        return f"--worker-uids {first}-{last}: give FIRST-LAST with 0 < FIRST <= LAST < 4294967295"
    for path in values["worker_bind"]:
        if not Path(path).is_absolute() or not Path(path).exists():
            return f"--worker-bind {path}: give an absolute path that exists"
    return check_env_names(values["worker_env"])


@dataclass
class Jail:
    """One worker's confinement: its command, environment, uid and cgroup."""

    command: list[str]
    env: dict[str, str]
    cwd: str
    confined: bool
    uid: int | None = None
    cgroup: WorkerCgroup | None = None
    _lock: int | None = field(default=None, repr=False)

    def exit_code(self, returncode: int) -> int:
        """bubblewrap reports a worker killed by signal N as exit code 128 + N."""
        return 128 - returncode if self.confined and 128 < returncode < 128 + 65 else returncode

    def memory_used(self, limit: int) -> int | None:
        """The cgroup's memory, or past ``limit`` once the kernel had to kill in it."""
        if self.cgroup is None:
            return None
        used = self.cgroup.memory_used()
        if self.cgroup.oom_kills():
            return max(self.cgroup.memory_peak() or 0, used or 0, limit + 1)
        return used

    def release(self) -> None:
        """Kill what is left in the cgroup and remove it, then give back the uid."""
        for _ in range(100):
            if self.cgroup is None or self.cgroup.remove():
                self.cgroup = None
                break
            self.cgroup.kill()
            time.sleep(0.01)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


class _UidPool:
    """Uids of the ``--worker-uids`` range, one per live worker, locked machine-wide."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        accounts = {entry.pw_uid for entry in pwd.getpwall()}
        self._free = [u for u in range(first, last + 1) if u not in accounts]
        self._held: set[int] = set()
        self.folder = _lock_folder()

    def take(self) -> tuple[int, int]:
        for uid in self._free:
            if uid in self._held:
                continue
            fd = os.open(
                self.folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._held.add(uid)
            return uid, fd
        raise OSError(f"all uids of --worker-uids {self.first}-{self.last} are in use")

    def give_back(self, uid: int | None) -> None:
        if uid is not None:
            self._held.discard(uid)


def _lock_folder() -> Path:
    """A root-only folder for the uid locks; refuses one another user could have planted."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    folder = base / "easytensor-worker-uids"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not folder.is_dir() or folder.is_symlink() or info.st_uid != 0 or info.st_mode & 0o022:
        raise OSError(f"{folder} is not a private folder of root's; remove it and start again")
    return folder


class Sandbox:
    """Everything a server learnt about confining workers here, and how to start one."""

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self.root = os.geteuid() == 0
        self.bwrap = bwrap.find() if sys.platform == "linux" else None
        self.setpriv = shutil.which("setpriv") if self.root else None
        self.binds = bwrap.needed_paths(options.binds)
        limits = options.memory_mb or options.max_procs or options.cpus
        self.cgroups = Cgroups.detect() if limits else Cgroups(why_not="no limit asked for")
        self.uids = _UidPool(*options.uids) if self.root and self.setpriv else None
        self.why_not = self._probe()
        if self.why_not and self.uids is not None:
            # Without bubblewrap a worker reads its folder by its real path, under a uid of
            # its own: it may pass through the run folder, not list it.
            run_folder().chmod(0o711)

    @property
    def confined(self) -> bool:
        return self.why_not is None

    def _probe(self) -> str | None:
        if sys.platform != "linux":
            return "namespaces exist only on Linux"
        if self.bwrap is None:
            return "bubblewrap is not installed (apt-get install bubblewrap)"
        with tempfile.TemporaryDirectory(prefix="easytensor-probe-") as folder:
            Path(folder).chmod(0o755)
            uid, lock = self.uids.take() if self.uids is not None else (None, None)
            try:
                command = self._bwrap(
                    [sys.executable, "-c", "import easytensor_jupyter"], Path(folder), uid
                )
                why = bwrap.probe(command, sandbox_env(self.options.threads, self.options.env))
            finally:
                if lock is not None:
                    os.close(lock)
                    assert self.uids is not None
                    self.uids.give_back(uid)
        return f"bubblewrap cannot make a sandbox here: {why}" if why else None

    def _bwrap(
        self, command: list[str], bundle: Path, uid: int | None, extra: Sequence[str] = ()
    ) -> list[str]:
        return bwrap.sandbox_command(
            command,
            bwrap=self.bwrap or "bwrap",
            bundle=bundle,
            binds=[*self.binds, *extra],
            tmp_bytes=int(self.options.tmp_mb * (1 << 20)),
            network=self.options.network,
            device=self.options.device,
            uid=uid,
            setpriv=self.setpriv,
        )

    def limits_args(self) -> list[str]:
        """What ``worker_main`` sets on itself before it imports anything of the model."""
        o = self.options
        args = ["--max-files", str(o.max_files), "--max-procs", str(o.max_procs)]
        return args + (["--cpu-seconds", str(o.cpu_seconds)] if o.cpu_seconds else [])

    def memory_hard_limit(self) -> int | None:
        """The kernel's limit: the watchdog's plus headroom, for what it is too slow to see."""
        mb = self.options.memory_mb
        return int(mb * (1 + _MEMORY_HEADROOM) * (1 << 20)) + (64 << 20) if mb else None

    def jail(self, bundle: Path, inner: list[str], label: str, binds: Sequence[str] = ()) -> Jail:
        """The confinement of one new worker whose bundle folder is ``bundle``; ``binds`` are
        extra read-only paths it sees (its model's environment)."""
        uid, lock = self.uids.take() if self.uids is not None else (None, None)
        group = None
        try:
            if self.cgroups.parents:
                limits = CgroupLimits(
                    self.memory_hard_limit(), self.options.max_procs, self.options.cpus
                )
                group = self.cgroups.create(f"w{uid}" if uid is not None else "w", limits)
            env = sandbox_env(self.options.threads, self.options.env)
            command = [*inner, *self.limits_args()]
            if self.confined:
                command = self._bwrap([*command, "--dir", bwrap.BUNDLE], bundle, uid, binds)
            else:
                # Without bubblewrap a root server still gives each worker a uid of its own.
                if uid is not None and self.setpriv:
                    drop = [self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
                    drop += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
                    command = [*drop, "--", *command]
                command += ["--dir", str(bundle)]
            command = join_script(group, command)
        except BaseException:
            if group is not None:
                group.remove()
            if lock is not None:
                os.close(lock)
            if self.uids is not None:
                self.uids.give_back(uid)
            raise
        jail = Jail(
            command, env, "/" if self.confined else str(bundle), self.confined, uid, group, lock
        )
        log.debug("%s: worker uid %s, cgroup %s", label, uid, group.dirs if group else None)
        return jail

    def release(self, jail: Jail) -> None:
        jail.release()
        if self.uids is not None:
            self.uids.give_back(jail.uid)

    def close(self) -> None:
        self.cgroups.close()
