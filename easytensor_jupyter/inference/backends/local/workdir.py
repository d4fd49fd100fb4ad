"""A worker's private folder of its version's files, and the environment it starts with."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import easytensor_jupyter
from easytensor_jupyter.bundle import MANIFEST_NAME
from easytensor_jupyter.inference.backends.base import WorkerSpec

__all__ = ["fill_dir", "prepare_dir", "sweep_stale_dirs", "worker_env"]


def fill_dir(directory: Path, spec: WorkerSpec) -> None:
    """Hard links (copies across devices) of the version's files, and its manifest."""
    for name, source in spec.files.items():
        target = directory / name
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    (directory / MANIFEST_NAME).write_bytes(spec.manifest_json)


_DIR_PREFIX = "easytensor-worker-"


def prepare_dir(spec: WorkerSpec | None) -> Path:
    """A private folder outside the store for one worker, filled now or when assigned.

    Its name carries the server's pid, so ``sweep_stale_dirs`` can tell the folders of a
    server that was killed from those of one still running.
    """
    directory = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-"))
    if spec is not None:
        try:
            fill_dir(directory, spec)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    return directory


def sweep_stale_dirs() -> None:
    """Remove worker folders left behind by servers that no longer run (kill -9)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*-*"):
        pid_text = path.name[len(_DIR_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            # Under root, a sandboxed worker's folder belongs to the worker's user.
            if os.geteuid() != 0 and path.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def worker_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    package_root = str(Path(easytensor_jupyter.__file__).resolve().parent.parent)
    paths = [package_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    return env
