"""Folders that killed replicas leave in the temp folder, removed when the next one starts.

A replica keeps the version's files in ``easytensor-replica-<pid>-*`` and its worker's bundle
folder in the local backend's ``easytensor-worker-<pid>-*``. Neither goes when Ray kills the
replica (SIGKILL, a node or cluster stopping), so each replica and each control plane removes,
at start, those whose owning process is gone: same owner as us, not a link, and a pid that no
longer runs. A folder whose pid runs again (reused) stays, which is the safe way to be wrong.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from easytensor_jupyter.inference.backends.local.workdir import sweep_stale_dirs

__all__ = ["REPLICA_PREFIX", "new_replica_dir", "sweep_leftovers", "sweep_replica_dirs"]

REPLICA_PREFIX = "easytensor-replica-"


def _owner_gone(path: Path, pid_text: str) -> bool:
    if not pid_text.isdigit() or int(pid_text) in (0, os.getpid()):
        return False
    try:
        if path.is_symlink() or path.lstat().st_uid != os.geteuid():
            return False
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def sweep_replica_dirs(temp: Path | None = None) -> list[Path]:
    """Remove the replica folders of processes that no longer run; returns what went."""
    removed = []
    for path in Path(temp or tempfile.gettempdir()).glob(f"{REPLICA_PREFIX}*-*"):
        pid_text = path.name[len(REPLICA_PREFIX) :].split("-", 1)[0]
        if _owner_gone(path, pid_text):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def sweep_leftovers() -> None:
    """Replica folders and worker run folders of dead processes."""
    sweep_replica_dirs()
    sweep_stale_dirs()


def new_replica_dir() -> Path:
    """Clear what dead replicas left, then make this replica's folder (mode 0700)."""
    sweep_leftovers()
    return Path(tempfile.mkdtemp(prefix=f"{REPLICA_PREFIX}{os.getpid()}-"))
