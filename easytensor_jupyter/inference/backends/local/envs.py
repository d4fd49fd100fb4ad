"""Per-model environments: the pins a version needs that the server's own environment lacks.

Each environment is a uv virtual environment layered over the server's: a ``.pth`` file puts the
server's site-packages after the environment's own, so torch, NumPy and the runtime are shared
and never reinstalled, while the pinned packages shadow the server's copies. The environment is
resolved against the server's installed versions (as constraints), and only what differs is
installed, without dependencies of its own. Environments are cached by the hash of their pins
and shared by every version with the same pins; a build happens once even when several uploads
ask for it at the same time.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata as metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from easytensor_jupyter.requirements import NEVER_PINNED

__all__ = ["Environment", "EnvironmentBuildError", "EnvironmentBuilder"]

log = logging.getLogger("easytensor.envs")

READY = "easytensor-env.json"
_TAIL_LINES = 15
_BUILD_TIMEOUT_S = 900
_MAX_ROUNDS = 8


class EnvironmentBuildError(RuntimeError):
    """uv failed; ``tail`` is the end of its output, for the upload's answer."""

    def __init__(self, message: str, tail: str) -> None:
        super().__init__(message)
        self.tail = tail


@dataclass(frozen=True)
class Environment:
    key: str
    path: Path
    requirements: list[str]
    installed: list[str] = field(default_factory=list)

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")


def _server_site_paths() -> list[str]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    import easytensor_jupyter

    paths.add(str(Path(easytensor_jupyter.__file__).resolve().parent.parent))
    return sorted(p for p in paths if p and Path(p).is_dir())


def _installed_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def _unsatisfied(requirement: Requirement, search: list[str]) -> bool:
    name = canonicalize_name(requirement.name)
    if name in NEVER_PINNED:
        return False
    for dist in metadata.distributions(path=search):
        if canonicalize_name(dist.metadata["Name"] or "") == name:
            return not requirement.specifier.contains(dist.version, prereleases=True)
    return True


def _missing_dependencies(site: str, search: list[str]) -> set[str]:
    """Requirements of the packages installed in ``site`` that nothing on ``search`` meets."""
    missing: set[str] = set()
    for dist in metadata.distributions(path=[site]):
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            if _unsatisfied(requirement, search):
                requirement.marker = None
                missing.add(str(requirement))
    return missing


def _uv() -> str:
    try:
        import uv

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise EnvironmentBuildError(
                "building per-model environments needs uv: pip install uv", ""
            ) from None
        return found


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-_TAIL_LINES:])


class EnvironmentBuilder:
    def __init__(
        self,
        root: Path,
        *,
        index_url: str | None = None,
        find_links: Iterable[str] = (),
    ) -> None:
        self.root = root
        self.index_url = index_url
        self.find_links = list(find_links)
        self._locks: dict[str, asyncio.Lock] = {}
        self.builds = 0

    def key(self, requirements: Iterable[str]) -> str:
        pins = sorted(line.strip() for line in requirements)
        text = json.dumps({"pins": pins, "python": sys.version, "prefix": sys.prefix})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def find(self, requirements: Iterable[str]) -> Environment | None:
        key = self.key(requirements)
        marker = self.root / key / READY
        if not marker.is_file():
            return None
        info = json.loads(marker.read_text())
        return Environment(key, self.root / key, info["requirements"], info["installed"])

    async def ensure(
        self, requirements: list[str], progress: Callable[[str], None] | None = None
    ) -> Environment:
        key = self.key(requirements)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            ready = self.find(requirements)
            if ready is not None:
                return ready
            if progress is not None:
                progress(f"Building environment: {', '.join(requirements)}")
            return await asyncio.to_thread(self._build, key, requirements)

    def _run(self, args: list[str], what: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
        env["UV_NO_CONFIG"] = "1"
        try:
            done = subprocess.run(
                [_uv(), *args],
                capture_output=True,
                text=True,
                timeout=_BUILD_TIMEOUT_S,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EnvironmentBuildError(f"{what} took over {_BUILD_TIMEOUT_S} s", "") from None
        if done.returncode != 0:
            tail = _tail(done.stderr or done.stdout)
            raise EnvironmentBuildError(
                f"{what} failed: {tail.splitlines()[-1] if tail else ''}", tail
            )
        return done.stdout

    def _sources(self) -> list[str]:
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        elif self.find_links:
            args.append("--no-index")
        for link in self.find_links:
            args += ["--find-links", link]
        return args

    def _build(self, key: str, requirements: list[str]) -> Environment:
        self.root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".building-{key}-", dir=self.root))
        try:
            installed = self._resolve_and_install(work, requirements)
            (work / READY).write_text(
                json.dumps({"requirements": requirements, "installed": installed})
            )
            # mkdtemp made it 0700; sandboxed workers run as other users and must read it.
            work.chmod(0o755)
            target = self.root / key
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
            self.builds += 1
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        # The venv's scripts name their folder; the interpreter itself does not care.
        return Environment(key, target, requirements, installed)

    def _resolve_and_install(self, work: Path, requirements: list[str]) -> list[str]:
        """Install what the server lacks, without dependencies, then each dependency the server
        does not satisfy either, until nothing is missing. uv can't see the server's packages
        through the ``.pth`` file, so it never resolves against them; this loop does."""
        self._run(["venv", "--quiet", "--python", sys.executable, str(work)], "creating the venv")
        python = work / "bin" / "python"
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        server_paths = _server_site_paths()
        Path(site, "_easytensor_server.pth").write_text("\n".join(server_paths) + "\n")
        search = [site, *server_paths]
        wanted = [line for line in requirements if _unsatisfied(Requirement(line), search)]
        installed: list[str] = []
        for _ in range(_MAX_ROUNDS):
            if not wanted:
                return installed
            (work / "install.txt").write_text("\n".join(wanted) + "\n")
            self._run(
                [
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--python",
                    str(python),
                    *self._sources(),
                    "-r",
                    str(work / "install.txt"),
                ],
                f"installing {', '.join(wanted)}",
            )
            installed += wanted
            wanted = sorted(_missing_dependencies(site, search))
        raise EnvironmentBuildError(
            f"the dependencies of {', '.join(requirements)} did not settle after "
            f"{_MAX_ROUNDS} rounds; still missing: {', '.join(wanted)}",
            "",
        )

    def remove_unused(self, keep: Iterable[str]) -> list[str]:
        """Delete environments no version uses (and half-built ones); returns their keys."""
        if not self.root.is_dir():
            return []
        keep = set(keep)
        removed = []
        for path in self.root.iterdir():
            if path.name.startswith(".building-") or (path.is_dir() and path.name not in keep):
                if path.name.startswith(".building-") and any(
                    lock.locked() for lock in self._locks.values()
                ):
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed
