"""The servers running on this machine for one ``EASYTENSOR_HOME``, so a shell finds them.

Every server, embedded or ``easytensor serve``, writes one record under
``$EASYTENSOR_HOME/servers/`` once it accepts connections and removes it when it stops. A server
killed outright leaves its record behind, so a record counts only while its process is alive and
is still the process that wrote it: pids are reused, so the process start time must match too.
Records are private files (mode 0600), so only the user who started a server finds it.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from easytensor_jupyter import config

__all__ = [
    "OWNER_ENV",
    "Resolved",
    "ServerRecord",
    "SeveralServers",
    "default_owner",
    "describe_all",
    "records_dir",
    "register",
    "resolve",
    "running",
    "unregister",
]

OWNER_ENV = "EASYTENSOR_SERVER_OWNER"
_DIR = "servers"
log = logging.getLogger("easytensor.servers")


def records_dir(base: Path | None = None) -> Path:
    return (base or config.home()) / _DIR


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@dataclass(frozen=True)
class ServerRecord:
    url: str
    pid: int
    owner: str
    started_at: str
    store: str
    embedded: bool = False
    owner_pid: int | None = None
    user: str = ""
    process_start: str | None = None

    def started_local(self) -> str:
        try:
            when = datetime.strptime(self.started_at, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return self.started_at
        return when.replace(tzinfo=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")

    def describe(self) -> str:
        """``http://127.0.0.1:8765 (easytensor serve, pid 1234, started 2025-01-02 10:42)``."""
        return f"{self.url} ({self.owner}, pid {self.pid}, started {self.started_local()})"

    def alive(self) -> bool:
        if not config.pid_alive(self.pid):
            return False
        current = _process_start(self.pid)
        return self.process_start is None or current is None or current == self.process_start


def _owner(embedded: bool, owner_pid: int | None) -> str:
    if not embedded:
        return "easytensor serve"
    who = os.environ.get(OWNER_ENV) or "a Python process"
    return f"embedded, for {who} (pid {owner_pid})" if owner_pid else f"embedded, for {who}"


def register(
    url: str,
    *,
    store: str,
    embedded: bool = False,
    owner_pid: int | None = None,
    base: Path | None = None,
) -> ServerRecord:
    """Record this process as a server listening on ``url``."""
    pid = os.getpid()
    record = ServerRecord(
        url=url,
        pid=pid,
        owner=_owner(embedded, owner_pid),
        started_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        store=store,
        embedded=embedded,
        owner_pid=owner_pid,
        user=_user(),
        process_start=_process_start(pid),
    )
    try:
        config.write_private_file(records_dir(base) / f"{pid}.json", json.dumps(asdict(record)))
    except OSError as exc:
        log.warning("cannot record this server in %s: %s", records_dir(base), exc)
    return record


def unregister(record: ServerRecord, base: Path | None = None) -> None:
    (records_dir(base) / f"{record.pid}.json").unlink(missing_ok=True)


def _read(path: Path) -> ServerRecord | None:
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
        return ServerRecord(**raw) if isinstance(raw, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def running(base: Path | None = None) -> list[ServerRecord]:
    """Live servers, oldest first; records left by servers that died are removed."""
    found = []
    try:
        paths = sorted(records_dir(base).glob("*.json"))
    except OSError:
        return []
    for path in paths:
        record = _read(path)
        if record is not None and record.alive():
            found.append(record)
        elif record is not None:
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda r: (r.started_at, r.pid))


def describe_all(records: Sequence[ServerRecord], indent: str = "  ") -> str:
    return "\n".join(f"{indent}{r.describe()}" for r in records)


class SeveralServers(Exception):
    """More than one server runs here and nothing says which to use."""

    def __init__(self, records: Sequence[ServerRecord], advice: str) -> None:
        self.records = list(records)
        super().__init__(
            f"{len(self.records)} EasyTensor servers are running on this machine:\n"
            f"{describe_all(self.records)}\n{advice}"
        )


@dataclass(frozen=True)
class Resolved:
    url: str
    source: Literal["argument", "environment", "running"]
    record: ServerRecord | None = None


Chooser = Callable[[Sequence[ServerRecord]], ServerRecord]


def resolve(
    explicit: str | None = None,
    *,
    base: Path | None = None,
    choose: Chooser | None = None,
    advice: str = "Choose one: pass url=..., or set EASYTENSOR_URL.",
) -> Resolved | None:
    """The URL given, else ``EASYTENSOR_URL``, else the one server running here.

    None when nothing is configured and nothing runs. With several running, ``choose`` picks one
    (the CLI asks on a terminal); without it ``SeveralServers`` lists them, ending in ``advice``.
    """
    if explicit:
        return Resolved(explicit.rstrip("/"), "argument")
    env = os.environ.get("EASYTENSOR_URL")
    if env:
        return Resolved(env.rstrip("/"), "environment")
    found = running(base)
    if not found:
        return None
    if len(found) == 1:
        return Resolved(found[0].url, "running", found[0])
    if choose is None:
        raise SeveralServers(found, advice)
    picked = choose(found)
    return Resolved(picked.url, "running", picked)


def default_owner() -> str:
    """What starts an embedded server when nobody says: a notebook kernel, or a named program."""
    if "ipykernel" in sys.modules:
        return "a notebook kernel"
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return f"{program or 'python'}"
