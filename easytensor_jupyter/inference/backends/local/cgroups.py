"""Per-worker cgroups: memory, process and CPU limits that count a worker's whole process tree.

An rlimit or an RSS poll of one pid is blind to what the worker forks; a cgroup is not, so
where the server may create cgroups (as root, on cgroup v1 or v2) each worker gets one under
the server's own cgroup, named ``easytensor-<server pid>/<worker>``:

* memory: a hard limit a little above ``--worker-memory-mb`` (the watchdog stops the worker at
  the limit itself, with a clear error; the kernel stops whatever the watchdog was too slow to
  see), and its tmpfs pages count too;
* pids: ``pids.max`` (``--worker-max-procs``), so a fork bomb stops there;
* cpu: a CFS quota of ``--worker-cpus`` cores, so a runaway thread takes no more than that.

A worker joins its cgroups before anything of it runs (``join_script``), so no child it starts
can be born outside. Cgroup v2 is used only where the server's cgroup holds the server alone
(then the server moves into a leaf and delegates to its workers), which is also how a normal
user's server gets cgroups (systemd ``Delegate=yes``); v1 hierarchies need root.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CgroupLimits", "Cgroups", "WorkerCgroup", "join_script"]

_CONTROLLERS = ("memory", "pids", "cpu")
_PERIOD_US = 100_000
_PREFIX = "easytensor-"


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int | None = None
    procs: int | None = None
    cpus: float | None = None


def _mounts() -> tuple[dict[str, Path], Path | None]:
    """cgroup v1 hierarchy per controller, and the v2 mount, from ``/proc/self/mountinfo``."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3 or fields[3] != "/":
                continue
            if tail[0] == "cgroup2" and v2 is None:
                v2 = Path(fields[4])
            elif tail[0] == "cgroup":
                for option in tail[2].split(","):
                    if option in _CONTROLLERS:
                        v1.setdefault(option, Path(fields[4]))
    return v1, v2


def _own_paths() -> dict[str, str]:
    """The server's cgroup path per v1 controller, and ``""`` for v2."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            for name in names.split(",") if names else [""]:
                found[name] = path
    return found


def _write(path: Path, value: str) -> None:
    with path.open("w") as fh:
        fh.write(value)


@dataclass
class WorkerCgroup:
    """One worker's cgroup directories (one per v1 hierarchy, or one v2 directory)."""

    version: int
    dirs: dict[str, Path]

    @property
    def procs_files(self) -> list[str]:
        return sorted({str(d / "cgroup.procs") for d in self.dirs.values()})

    def _read(self, controller: str, name: str) -> str | None:
        folder = self.dirs.get(controller)
        try:
            return (folder / name).read_text() if folder is not None else None
        except OSError:
            return None

    def _stat(self, controller: str, name: str) -> dict[str, int]:
        text = self._read(controller, name) or ""
        pairs = (line.split() for line in text.splitlines())
        return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}

    def memory_used(self) -> int | None:
        """Anonymous and tmpfs memory of the whole tree; page cache is the kernel's to reclaim."""
        stat = self._stat("memory", "memory.stat")
        if not stat:
            return None
        if self.version == 1:
            return stat.get("total_rss", 0) + stat.get("total_shmem", 0)
        return stat.get("anon", 0) + stat.get("shmem", 0)

    def memory_peak(self) -> int | None:
        text = self._read(
            "memory", "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        )
        return int(text) if text and text.strip().isdigit() else None

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        return self._stat("memory", name).get("oom_kill", 0)

    def pids(self) -> list[int]:
        text = self._read(next(iter(self.dirs)), "cgroup.procs") or ""
        return [int(p) for p in text.split() if p.isdigit()]

    def kill(self) -> None:
        """Kill everything in the cgroup (``cgroup.kill`` on v2, one by one on v1)."""
        folder = self.dirs.get("pids") or next(iter(self.dirs.values()))
        if self.version == 2 and (folder / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(folder / "cgroup.kill", "1")
            return
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, 9)

    def remove(self) -> bool:
        """Remove the directories; False while a process is still in them."""
        done = True
        for folder in set(self.dirs.values()):
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        return done


@dataclass
class Cgroups:
    """Where this server may create worker cgroups, and what it can limit there."""

    version: int | None = None
    parents: dict[str, Path] = field(default_factory=dict)
    why_not: str = ""
    _count: Iterator[int] = field(default_factory=itertools.count)

    @property
    def controllers(self) -> set[str]:
        return set(self.parents)

    @classmethod
    def detect(cls) -> Cgroups:
        """Find, and create, ``easytensor-<pid>`` under the server's cgroup; never raises."""
        if not Path("/proc/self/cgroup").exists():
            return cls(why_not="no cgroups on this system")
        v1, v2 = _mounts()
        own = _own_paths()
        name = f"{_PREFIX}{os.getpid()}"
        if os.geteuid() != 0:
            found = _detect_v2(v2, own.get("", "/"), name) if v2 is not None else None
            if found is not None and found.parents:
                return found
            why = found.why_not if found is not None else "cgroup v1 needs a root server"
            return cls(why_not=f"no cgroup is delegated to this user ({why})")
        if v1:
            parents: dict[str, Path] = {}
            errors = []
            for controller, mount in v1.items():
                parent = mount / own.get(controller, "/").lstrip("/") / name
                try:
                    _sweep(parent.parent)
                    parent.mkdir(exist_ok=True)
                    parents[controller] = parent
                except OSError as exc:
                    errors.append(f"{controller}: {exc.strerror}")
            why = "; ".join(errors) if errors else ""
            if parents:
                return cls(version=1, parents=parents, why_not=why)
        if v2 is not None:
            return _detect_v2(v2, own.get("", "/"), name)
        return cls(why_not="no memory, pids or cpu cgroup controller is mounted")

    def create(self, label: str, limits: CgroupLimits) -> WorkerCgroup | None:
        """A new cgroup with these limits; None when there is nowhere to make one."""
        if not self.parents or self.version is None:
            return None
        number = next(self._count)
        dirs: dict[str, Path] = {}
        made: list[Path] = []
        try:
            for controller, parent in self.parents.items():
                folder = parent / f"{label}-{number}"
                if folder not in made:
                    folder.mkdir()
                    made.append(folder)
                dirs[controller] = folder
            group = WorkerCgroup(self.version, dirs)
            _apply(group, limits)
        except OSError:
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        return group

    def close(self) -> None:
        for parent in set(self.parents.values()):
            _sweep_children(parent)
            with contextlib.suppress(OSError):
                parent.rmdir()


def _apply(group: WorkerCgroup, limits: CgroupLimits) -> None:
    mem, pids, cpu = (group.dirs.get(c) for c in _CONTROLLERS)
    v1 = group.version == 1
    if mem is not None and limits.memory_bytes:
        _write(mem / ("memory.limit_in_bytes" if v1 else "memory.max"), str(limits.memory_bytes))
        swap = mem / ("memory.memsw.limit_in_bytes" if v1 else "memory.swap.max")
        if swap.exists():
            _write(swap, str(limits.memory_bytes) if v1 else "0")
    if pids is not None and limits.procs:
        _write(pids / "pids.max", str(limits.procs))
    if cpu is not None and limits.cpus:
        quota = max(1000, int(limits.cpus * _PERIOD_US))
        if v1:
            _write(cpu / "cpu.cfs_period_us", str(_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(quota))
        else:
            _write(cpu / "cpu.max", f"{quota} {_PERIOD_US}")


def _detect_v2(mount: Path, own: str, name: str) -> Cgroups:
    base = mount / own.lstrip("/")
    try:
        available = set((base / "cgroup.controllers").read_text().split())
        wanted = [c for c in _CONTROLLERS if c in available]
        if not wanted:
            return Cgroups(why_not=f"cgroup v2 at {base} offers none of memory, pids, cpu")
        if own not in ("", "/"):
            others = [
                p for p in (base / "cgroup.procs").read_text().split() if p != str(os.getpid())
            ]
            if others:
                return Cgroups(
                    why_not=f"the server's cgroup {own} holds other processes; give the server "
                    "a cgroup of its own (systemd: Delegate=yes)"
                )
            leaf = base / f"{name}-server"
            leaf.mkdir(exist_ok=True)
            _write(leaf / "cgroup.procs", str(os.getpid()))
        _sweep(base)
        _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        parent = base / name
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
    except OSError as exc:
        return Cgroups(why_not=f"cgroup v2 at {base}: {exc.strerror}")
    return Cgroups(version=2, parents=dict.fromkeys(wanted, parent))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _sweep_children(parent: Path) -> None:
    with contextlib.suppress(OSError):
        for child in parent.iterdir():
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()


def _sweep(folder: Path) -> None:
    """Remove the empty worker cgroups of servers that are gone (killed with SIGKILL)."""
    with contextlib.suppress(OSError):
        for parent in folder.glob(f"{_PREFIX}*"):
            pid = parent.name[len(_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                _sweep_children(parent)
                with contextlib.suppress(OSError):
                    parent.rmdir()


def join_script(group: WorkerCgroup | None, command: list[str]) -> list[str]:
    """``command``, started by a shell that first moves itself into the worker's cgroups."""
    if group is None:
        return command
    joins = " && ".join(f"echo 0 > {shlex.quote(f)}" for f in group.procs_files)
    return ["/bin/sh", "-c", f'{joins} && exec "$@" || exit 125', "sh", *command]
