"""An upload's environment survives a prune that runs while the upload is under way: it is
built before its version is stored, so the stored versions alone don't name it yet."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from wheels import build_wheel

from easytensor_jupyter.bundle import FileEntry, Manifest
from easytensor_jupyter.inference.api.errors import APIError
from easytensor_jupyter.inference.environments import ModelEnvironments
from easytensor_jupyter.inference.options import ServeOptions


def _manifest(requirements: list[str]) -> Manifest:
    entry = FileEntry(sha256="0" * 64, size=1)
    return Manifest(
        name="m",
        class_name="M",
        files={"model.py": entry, "weights.safetensors": entry},
        requirements=requirements,
    )


def test_a_prune_during_an_upload_keeps_its_environment_and_a_later_one_removes_it(
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "etdemo-prune", "1.0.0", "def f():\n    return 1\n")
    envs = ModelEnvironments(ServeOptions(find_links=(str(wheels),)), tmp_path / "store")
    manifest = _manifest(["etdemo-prune==1.0.0"])

    prepared = asyncio.run(envs.prepare(manifest))
    assert prepared.path is not None and prepared.path.is_dir()
    envs.start_prune()
    assert envs.prune([]) == []
    assert envs.path_for(manifest) == prepared.path

    envs.release(prepared)
    # A prune that listed the versions before the upload stored its own still keeps it.
    assert envs.prune([]) == []
    envs.start_prune()
    assert envs.prune([manifest]) == []
    envs.start_prune()
    assert envs.prune([]) == [prepared.path.name]
    assert envs.path_for(manifest) is None


def test_a_failed_build_releases_what_it_held(tmp_path: Path) -> None:
    envs = ModelEnvironments(ServeOptions(find_links=(str(tmp_path),)), tmp_path / "store")
    manifest = _manifest(["etdemo-absent==9.9"])
    with pytest.raises(APIError) as caught:
        asyncio.run(envs.prepare(manifest))
    assert caught.value.code == "environment_build_failed"
    assert "etdemo-absent" in caught.value.detail["installer_output"]
    # Nothing is held: a leftover half-built folder goes with the next prune.
    (tmp_path / "store" / "envs" / "stale").mkdir(parents=True)
    envs.start_prune()
    assert envs.prune([]) == ["stale"]
