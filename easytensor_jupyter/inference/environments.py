"""Whether a version's pinned requirements run here, and in which environment.

On upload the pins are compared with the environment the workers run in. Satisfied: the
version runs in the server's own. Missing or conflicting: with model environments on (the
default for ``easytensor serve`` on the local backend), one is built with uv before the version
goes live; off, the upload is refused with ``missing_requirements``. Python or torch of another
major.minor than the notebook's is a warning in the upload's answer, never a build.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easytensor_jupyter.bundle import Manifest
from easytensor_jupyter.inference.api.errors import APIError
from easytensor_jupyter.inference.backends.local.envs import (
    EnvironmentBuilder,
    EnvironmentBuildError,
)
from easytensor_jupyter.inference.options import ServeOptions
from easytensor_jupyter.requirements import Mismatch, missing, runtime_warnings

__all__ = ["ModelEnvironments", "Prepared", "prune_environments"]

log = logging.getLogger("easytensor.envs")


@dataclass
class Prepared:
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    environment: dict[str, Any] | None = None
    key: str | None = None


class ModelEnvironments:
    def __init__(self, options: ServeOptions, store_root: Path) -> None:
        self.enabled = options.model_envs and options.backend == "local"
        self.builder = (
            EnvironmentBuilder(
                store_root / "envs",
                index_url=options.package_index,
                find_links=options.find_links,
            )
            if self.enabled
            else None
        )
        self._gaps: dict[tuple[str, ...], list[Mismatch]] = {}
        # An upload's environment is built before its version is stored; pruning must not
        # take it in between. Released keys are kept until the next prune starts.
        self._held: dict[str, int] = {}
        self._released: set[str] = set()
        self._hold_lock = threading.Lock()

    def gaps(self, requirements: Iterable[str]) -> list[Mismatch]:
        key = tuple(requirements)
        if key not in self._gaps:
            self._gaps[key] = missing(key)
        return self._gaps[key]

    def plan(self, requirements: list[str]) -> dict[str, Any]:
        """What an upload with these pins would need here (the client prints it first)."""
        gaps = self.gaps(requirements)
        ready = bool(gaps) and self.builder is not None and self.builder.find(requirements)
        return {
            "missing": [g.text() for g in gaps],
            "build": bool(gaps) and self.builder is not None and not ready,
            "ready": not gaps or bool(ready),
            "environments": self.enabled,
        }

    def _refuse(self, gaps: list[Mismatch]) -> APIError:
        names = "; ".join(g.text() for g in gaps)
        how = (
            "install them in the server's environment, or start the server with "
            "--model-envs on (the default for easytensor serve)"
            if not self.enabled
            else "install them in the server's environment"
        )
        return APIError(
            422,
            "missing_requirements",
            f"the server lacks what this model needs: {names}. Fix: {how}.",
            {
                "packages": [
                    {"name": g.name, "notebook": g.wanted, "server": g.installed} for g in gaps
                ]
            },
        )

    async def prepare(self, manifest: Manifest) -> Prepared:
        prepared = Prepared(
            warnings=runtime_warnings(manifest.python_version, manifest.torch_version)
        )
        gaps = self.gaps(manifest.requirements)
        if not gaps:
            return prepared
        if self.builder is None:
            raise self._refuse(gaps)
        reused = self.builder.find(manifest.requirements) is not None
        prepared.key = self._hold(self.builder.key(manifest.requirements))
        try:
            env = await self.builder.ensure(list(manifest.requirements), log.info)
        except BaseException as exc:
            self.release(prepared)
            if not isinstance(exc, EnvironmentBuildError):
                raise
            raise APIError(
                422,
                "environment_build_failed",
                f"building the model's environment failed: {exc}",
                {"requirements": manifest.requirements, "installer_output": exc.tail},
            ) from None
        prepared.path = env.path
        prepared.environment = {
            "key": env.key,
            "requirements": env.requirements,
            "installed": env.installed,
            "reused": reused,
        }
        return prepared

    def _hold(self, key: str) -> str:
        with self._hold_lock:
            self._held[key] = self._held.get(key, 0) + 1
        return key

    def release(self, prepared: Prepared) -> None:
        """The upload that prepared this environment is over (stored or refused)."""
        key, prepared.key = prepared.key, None
        if key is None:
            return
        with self._hold_lock:
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)
                self._released.add(key)

    def path_for(self, manifest: Manifest) -> Path | None:
        """The environment a version's workers run (its ``bin/python``), or None for the
        server's own."""
        if self.builder is None or not self.gaps(manifest.requirements):
            return None
        env = self.builder.find(manifest.requirements)
        return env.path if env is not None else None

    def status(self, manifest: Manifest) -> dict[str, Any]:
        """For ``GET /v1/models/{id}``: the version's pins and its environment's state."""
        gaps = self.gaps(manifest.requirements)
        if not gaps:
            state = "server"
        elif self.builder is None:
            state = "missing"
        else:
            state = "ready" if self.builder.find(manifest.requirements) else "building"
        return {"requirements": list(manifest.requirements), "environment": state}

    def start_prune(self) -> None:
        """Called before the stored versions are listed for :meth:`prune`."""
        with self._hold_lock:
            self._released.clear()

    def prune(self, manifests: Iterable[Manifest]) -> list[str]:
        """Remove the environments no version uses any more, nor an upload under way."""
        if self.builder is None:
            return []
        keep = {self.builder.key(m.requirements) for m in manifests if self.gaps(m.requirements)}
        with self._hold_lock:
            keep |= set(self._held) | self._released
        removed = self.builder.remove_unused(keep)
        for key in removed:
            log.info("removed the unused model environment %s", key)
        return removed


def prune_environments(state: Any) -> list[str]:
    """At start and after deletions: drop environments that no stored version needs."""
    state.envs.start_prune()
    try:
        manifests = [v.manifest for m in state.store.list_models() for v in m.versions]
    except Exception:
        log.exception("could not list versions to prune model environments")
        return []
    removed: list[str] = state.envs.prune(manifests)
    return removed
