"""Where a worker's bundle files live, how the server fills them, and the worker's environment.

Every folder the server writes is one no worker can write: the server's own run folder
(``easytensor-worker-<pid>-*`` in the temp folder, 0700) holds one bundle folder per worker,
which the sandbox binds read-only at ``/bundle`` of that worker alone. The files are filled
through a directory descriptor with ``O_EXCL | O_NOFOLLOW`` and ``link(..., follow_symlinks=
False)``, so even a name that was somehow there already is refused, never followed. Hard links
to the store's blobs are safe for that reason: the only path a worker holds to one is read-only.

The environment of a sandboxed worker is built from an allowlist, not by stripping the
server's: a secret the server has (``PGPASSWORD``, a cloud token) never reaches model code
unless the operator passes it with ``--worker-env``.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import easytensor_jupyter
from easytensor_jupyter.bundle import MANIFEST_NAME
from easytensor_jupyter.inference.backends.base import WorkerSpec

__all__ = [
    "check_env_names",
    "fill_dir",
    "new_bundle_dir",
    "plain_env",
    "run_folder",
    "sandbox_env",
    "sweep_stale_dirs",
]

_DIR_PREFIX = "easytensor-worker-"
_ALLOWED = ("LANG", "LANGUAGE", "TZ", "TERM")
_ALLOWED_PREFIXES = ("LC_",)
_DEVICES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_lock = threading.Lock()
_run: Path | None = None


def run_folder() -> Path:
    """This server's private folder for bundle folders (created on first use, mode 0700).

    Its name carries the server's pid, so ``sweep_stale_dirs`` can tell the folders of a
    server that was killed from those of one still running.
    """
    global _run
    with _lock:
        if _run is None or not _run.is_dir():
            _run = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-"))
        return _run


def fill_dir(directory: Path, spec: WorkerSpec) -> None:
    """Hard links (copies across devices) of the version's files, and its manifest; never
    follows or replaces a name already there."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name, source in spec.files.items():
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"bad bundle file name {name!r}")
            try:
                os.link(source, name, dst_dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                with Path(source).open("rb") as src, _create(fd, name) as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        with _create(fd, MANIFEST_NAME) as out:
            out.write(spec.manifest_json)
    finally:
        os.close(fd)


def _create(dir_fd: int, name: str) -> BinaryIO:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(name, flags, 0o444, dir_fd=dir_fd), "wb")


def new_bundle_dir(spec: WorkerSpec | None) -> Path:
    """A new bundle folder in the run folder, filled now or when a standby worker is assigned."""
    directory = Path(tempfile.mkdtemp(prefix="w-", dir=run_folder()))
    directory.chmod(0o755)
    if spec is not None:
        try:
            fill_dir(directory, spec)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    return directory


def sweep_stale_dirs() -> None:
    """Remove run folders left behind by servers that no longer run (kill -9)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*-*"):
        pid_text = path.name[len(_DIR_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            if path.is_symlink() or path.lstat().st_uid != os.geteuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _package_root() -> str:
    return str(Path(easytensor_jupyter.__file__).resolve().parent.parent)


def _threads(env: dict[str, str], threads: int) -> dict[str, str]:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    return env


def check_env_names(items: Sequence[str]) -> str | None:
    """Why a ``--worker-env`` item is refused, or None when all are fine."""
    for item in items:
        name = item.split("=", 1)[0]
        if not name or not name.replace("_", "a").isalnum():
            return f"--worker-env {item!r}: give NAME or NAME=VALUE"
        if name.startswith("EASYTENSOR_"):
            return f"--worker-env {item!r}: EASYTENSOR_* variables never reach model code"
    return None


def sandbox_env(threads: int, passed: Sequence[str] = ()) -> dict[str, str]:
    """A sandboxed worker's whole environment: an allowlist, then what the operator passes."""
    source = os.environ
    env = {
        k: v
        for k, v in source.items()
        if k in _ALLOWED or k in _DEVICES or k.startswith(_ALLOWED_PREFIXES)
    }
    paths = [_package_root(), *filter(None, source.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        PATH=f"{Path(sys.executable).parent}:{_SYSTEM_PATH}",
        HOME="/tmp",
        TMPDIR="/tmp",
        USER="easytensor",
        LOGNAME="easytensor",
        PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    for item in passed:
        name, sep, value = item.partition("=")
        if sep:
            env[name] = value
        elif name in source:
            env[name] = source[name]
    return _threads(env, threads)


def plain_env(threads: int) -> dict[str, str]:
    """Without the sandbox (``--no-worker-sandbox``): the server's, minus ``EASYTENSOR_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    paths = [_package_root(), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return _threads(env, threads)
