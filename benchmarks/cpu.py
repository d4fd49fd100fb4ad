"""CPU time per request, per part of a system, from ``/proc`` (user + system time).

A part is a set of processes picked from the process table (the server, its workers, Ray's
replicas, Ray's own daemons); ``Meter`` snapshots every part before and after a load run, and
the difference divided by the requests answered is what each part spent on one request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Meter", "Table", "descendants", "local_parts", "ray_parts", "table"]

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    ppid: int
    cmdline: str
    cpu_s: float


Table = dict[int, Proc]


def table() -> Table:
    found: Table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # After the name: state, ppid, ... utime is field 14 of the whole line, stime 15.
        cpu = (int(fields[11]) + int(fields[12])) / _TICK
        found[int(entry.name)] = Proc(int(fields[1]), cmdline, cpu)
    return found


def descendants(procs: Table, roots: Iterable[int]) -> set[int]:
    """The roots and every process below them."""
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.ppid, []).append(pid)
    out: set[int] = set()
    todo = [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo += children.get(pid, [])
    return out


Parts = Callable[[Table], dict[str, set[int]]]


def local_parts(server_pid: int) -> Parts:
    def parts(procs: Table) -> dict[str, set[int]]:
        below = descendants(procs, [server_pid]) - {server_pid}
        return {"server": {server_pid}, "worker": below}

    return parts


def ray_parts(server_pid: int, cluster_pid: int) -> Parts:
    """The control plane, the replicas, their workers, and all else Ray runs."""

    def parts(procs: Table) -> dict[str, set[int]]:
        replicas = {pid for pid, p in procs.items() if "ServeReplica:" in p.cmdline}
        workers = descendants(procs, replicas) - replicas
        ray = descendants(procs, [cluster_pid]) - replicas - workers
        ray |= {pid for pid, p in procs.items() if "ray::" in p.cmdline} - replicas - workers
        server = descendants(procs, [server_pid])
        return {"server": server, "replica": replicas, "worker": workers, "ray": ray - server}

    return parts


class Meter:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self._before: Table = {}

    def start(self) -> None:
        self._before = table()

    def per_request_ms(self, requests: int) -> dict[str, float]:
        """Milliseconds of CPU per request for each part since ``start``."""
        after = table()
        out = {}
        for name, pids in self.parts(after).items():
            spent = 0.0
            for pid in pids:
                was = self._before.get(pid)
                spent += after[pid].cpu_s - (was.cpu_s if was else 0.0)
            out[name] = 1000.0 * spent / max(1, requests)
        return out
