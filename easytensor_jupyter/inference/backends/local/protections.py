"""Which worker protections hold on this machine, and why each that does not is off.

One row per protection, the same at start-up (``Sandbox: OFF: ...`` lines in the server log)
and in ``easytensor serve --sandbox-report``, so nothing is silently weaker than said.
"""

from __future__ import annotations

from dataclasses import dataclass

from easytensor_jupyter.inference.backends.local.sandbox import Sandbox, SandboxOptions

__all__ = ["Protection", "describe", "report_table", "startup_lines"]


@dataclass(frozen=True)
class Protection:
    name: str
    on: bool
    how: str


_ROWS = (
    ("folders", "server never writes where a worker can; a worker sees only its own folder"),
    ("identity", "each worker has its own identity"),
    ("pidns", "own PID namespace: no other process visible"),
    ("hidden", "host files hidden (home, store, admin key)"),
    ("signals", "no signal reaches anything outside the worker"),
    ("blobs", "store blobs never writable by a worker"),
    ("env", "environment from an allowlist (+ --worker-env)"),
    ("output", "answer size capped"),
    ("tree", "every process ends with its worker"),
    ("procs", "process limit per worker"),
    ("memory", "memory limit over the whole process tree"),
    ("cpu", "CPU quota per worker"),
    ("idle", "a worker computing with no request in flight is replaced"),
    ("tmp", "private, size-capped /tmp, /var/tmp, /dev/shm"),
    ("network", "no network"),
    ("rlimits", "rlimits: open files, no core dumps, CPU seconds"),
)


def _rows(found: dict[str, tuple[bool, str]]) -> list[Protection]:
    return [Protection(name, *found[key]) for key, name in _ROWS]


def _identity(box: Sandbox) -> tuple[bool, str]:
    o = box.options
    if box.root:
        if box.uids is None:
            return False, "setpriv is not installed (util-linux)"
        return True, f"a uid of its own from {o.uids[0]}-{o.uids[1]}"
    return (True, "its own user namespace") if box.confined else (False, box.why_not or "")


def _limits(box: Sandbox) -> dict[str, tuple[bool, str]]:
    o, cg = box.options, box.cgroups
    name = f"cgroup v{cg.version}"
    if "pids" in cg.controllers:
        procs = (True, f"{o.max_procs} tasks ({name} pids.max)")
    elif box.uids is not None:
        procs = (True, f"{o.max_procs} tasks (RLIMIT_NPROC of its own uid)")
    elif box.confined and not box.root:
        procs = (True, f"{o.max_procs} tasks (RLIMIT_NPROC in its own user namespace)")
    else:
        procs = (False, "RLIMIT_NPROC would count every process of the server's user")
    if not o.memory_mb:
        memory = (False, "--worker-memory-mb 0")
    elif "memory" in cg.controllers:
        memory = (True, f"{o.memory_mb:g} MB ({name} memory, watchdog at the limit)")
    else:
        memory = (True, f"{o.memory_mb:g} MB (watchdog sums the process tree; {cg.why_not})")
    if not o.cpus:
        cpu = (False, "--worker-cpus 0")
    elif "cpu" in cg.controllers:
        cpu = (True, f"{o.cpus:g} cores ({name} cpu quota)")
    else:
        cpu = (False, cg.why_not or "no cpu cgroup controller")
    idle = (
        (True, f"over {o.idle_cpu:g} CPU s in 10 s")
        if o.idle_cpu
        else (False, "--worker-idle-cpu 0")
    )
    return {"procs": procs, "memory": memory, "cpu": cpu, "idle": idle}


def _protections(box: Sandbox) -> list[Protection]:
    o, ok, why = box.options, box.confined, box.why_not or ""

    def jailed(how: str) -> tuple[bool, str]:
        return (True, how) if ok else (False, why)

    def by_uid(how: str) -> tuple[bool, str]:
        """Without bubblewrap, a uid of its own still keeps a root server's worker apart."""
        return (True, how) if box.uids is not None else (False, why)

    found = {
        "folders": jailed("read-only bind of its own bundle folder")
        if ok
        else by_uid("its folder is root's, in root's run folder (0711)"),
        "identity": _identity(box),
        "pidns": jailed("bubblewrap --unshare-pid"),
        "hidden": jailed("a read-only root of system folders only"),
        "signals": jailed("PID namespace") if ok else by_uid("another uid than any other process"),
        "blobs": jailed("read-only mount") if ok else by_uid("another uid; blobs are 0444"),
        "env": (True, f"{len(o.env)} variable(s) passed by the operator"),
        "output": (True, f"{o.max_output_mb:g} MB (--worker-max-output-mb)"),
        "tree": jailed("the PID namespace dies with the worker"),
        **_limits(box),
        "tmp": jailed(f"{o.tmp_mb:g} MB tmpfs each"),
        "network": (False, "--worker-network") if o.network else jailed("empty network namespace"),
        "rlimits": (
            True,
            f"{o.max_files} files" + (f", {o.cpu_seconds} CPU s" if o.cpu_seconds else ""),
        ),
    }
    return _rows(found)


def describe(box: Sandbox | None, options: SandboxOptions) -> list[Protection]:
    """The protections of a server: its sandbox's, or without one only those kept anyway."""
    if box is not None:
        return _protections(box)
    found = dict.fromkeys((key for key, _ in _ROWS), (False, "--no-worker-sandbox"))
    found["output"] = (True, f"{options.max_output_mb:g} MB (--worker-max-output-mb)")
    if options.memory_mb:
        found["memory"] = (True, f"{options.memory_mb:g} MB (watchdog sums the process tree)")
    if options.idle_cpu:
        found["idle"] = (True, f"over {options.idle_cpu:g} CPU s in 10 s")
    return _rows(found)


def report_table(rows: list[Protection]) -> str:
    """The ``--sandbox-report`` table: one line per protection, on or OFF, how or why not."""
    width = max(len(p.name) for p in rows)
    lines = [f"{'protection':<{width}}  on?  how, or why not", "-" * (width + 40)]
    lines += [f"{p.name:<{width}}  {'on ' if p.on else 'OFF'}  {p.how}" for p in rows]
    lines.append(f"{sum(p.on for p in rows)} of {len(rows)} protections on")
    return "\n".join(lines)


def startup_lines(rows: list[Protection]) -> list[str]:
    """What the server prints at start: a count, then each protection that is off and why."""
    on = sum(p.on for p in rows)
    lines = [f"Sandbox: {on} of {len(rows)} protections on (easytensor serve --sandbox-report)"]
    return lines + [f"Sandbox: OFF: {p.name}: {p.how}" for p in rows if not p.on]
