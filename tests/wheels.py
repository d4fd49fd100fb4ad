"""Tiny made-up packages, built into wheels with hatchling, for environment tests (no network)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def build_wheel(
    out: Path, name: str, version: str, code: str, dependencies: tuple[str, ...] = ()
) -> Path:
    """Write a one-module project for ``name`` and build its wheel into ``out``."""
    module = name.replace("-", "_")
    project = out.parent / f"src-{name}-{version}"
    (project / module).mkdir(parents=True, exist_ok=True)
    (project / module / "__init__.py").write_text(textwrap.dedent(code))
    deps = ", ".join(f'"{d}"' for d in dependencies)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "{name}"
            version = "{version}"
            dependencies = [{deps}]

            [tool.hatch.build.targets.wheel]
            packages = ["{module}"]
            """
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(project),
        ],
        check=True,
        capture_output=True,
    )
    return next(out.glob(f"{module}-{version}-*.whl"))
