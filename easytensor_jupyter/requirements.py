"""The model's environment: which installed packages its code imports, pinned, and whether an
environment satisfies those pins.

The notebook side reads the imports of ``model.py`` and the files shipped with it, maps each
top-level module to the distribution that installed it, and pins the notebook's version. The
server side asks the same questions of the environment its workers would run in. torch and
Python are never pinned: they are the server's, and a difference is a warning.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = [
    "NEVER_PINNED",
    "Mismatch",
    "describe",
    "detect_requirements",
    "merge_requirements",
    "missing",
    "runtime_warnings",
]

NEVER_PINNED = frozenset({"torch", "easytensor-jupyter"})
"""The server's own: never installed into a model's environment."""

_STATE_PACKAGES = {"state.skops": ("scikit-learn", "skops"), "hf_tokenizer": ("tokenizers",)}


@dataclass(frozen=True)
class Mismatch:
    """A pinned package an environment lacks (``installed`` None) or has in another version."""

    name: str
    wanted: str
    installed: str | None

    def text(self) -> str:
        have = "not installed" if self.installed is None else f"has {self.installed}"
        return f"{self.name} (notebook: {self.wanted}; server: {have})"


def _imported_tops(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    tops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            tops.add(node.module.partition(".")[0])
    return tops


def _distributions(tops: Iterable[str], local: set[str]) -> dict[str, str]:
    """``{distribution: version}`` for the top-level modules that come from installed packages."""
    owners = metadata.packages_distributions()
    found: dict[str, str] = {}
    for top in sorted(set(tops) - local):
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            continue
        for dist in owners.get(top, []):
            name = canonicalize_name(dist)
            if name in NEVER_PINNED:
                continue
            try:
                found[name] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return found


def detect_requirements(
    source: str,
    shipped: Mapping[str, Path] | None = None,
    state_files: Iterable[str] = (),
    state_kinds: Iterable[str] = (),
) -> list[str]:
    """Pins (``name==version``) for every installed distribution the model's code imports."""
    shipped = dict(shipped or {})
    tops = _imported_tops(source)
    for root in shipped.values():
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for file in files:
            tops |= _imported_tops(file.read_text(encoding="utf-8", errors="replace"))
    pins = _distributions(tops, set(shipped) | {"easytensor_jupyter"})
    for key in [*state_files, *state_kinds]:
        for dist in _STATE_PACKAGES.get(key, ()):
            try:
                pins.setdefault(canonicalize_name(dist), metadata.version(dist))
            except metadata.PackageNotFoundError:
                continue
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _parse(line: str) -> Requirement:
    try:
        return Requirement(line)
    except InvalidRequirement as exc:
        raise ValueError(
            f"--requirements {line!r} is not a requirement ({exc}); write it as pip does, "
            "e.g. 'scikit-learn==1.5.2' or 'regex>=2024.1'"
        ) from None


def merge_requirements(detected: Iterable[str], given: Iterable[str]) -> list[str]:
    """Detected pins, with ``--requirements`` adding packages or replacing a detected pin."""
    merged = {canonicalize_name(_parse(line).name): line for line in detected}
    for line in given:
        merged[canonicalize_name(_parse(line).name)] = line.strip()
    return [merged[name] for name in sorted(merged)]


def _installed(name: str, paths: list[str] | None) -> str | None:
    try:
        if paths is None:
            return metadata.version(name)
        found = list(metadata.distributions(name=name, path=paths))
        return found[0].version if found else None
    except metadata.PackageNotFoundError:
        return None


def missing(requirements: Iterable[str], paths: list[str] | None = None) -> list[Mismatch]:
    """The requirements an environment (this one, or the given ``sys.path``) does not satisfy."""
    out: list[Mismatch] = []
    for line in requirements:
        try:
            requirement = _parse(line)
        except ValueError:
            out.append(Mismatch(line, line, None))
            continue
        if canonicalize_name(requirement.name) in NEVER_PINNED:
            continue
        installed = _installed(requirement.name, paths)
        ok = installed is not None
        if ok and requirement.specifier:
            try:
                ok = requirement.specifier.contains(Version(installed or ""), prereleases=True)
            except InvalidVersion:
                ok = False
        if not ok:
            out.append(Mismatch(requirement.name, str(requirement.specifier) or "any", installed))
    return out


def _major_minor(version: str | None) -> str | None:
    if not version:
        return None
    try:
        release = Version(version.split("+")[0]).release
    except InvalidVersion:
        return None
    return ".".join(str(part) for part in release[:2])


def runtime_warnings(python: str | None, torch: str | None) -> list[str]:
    """Python or torch major.minor that differ between the notebook and this environment."""
    import platform

    warnings = []
    here_python = platform.python_version()
    if _major_minor(python) and _major_minor(python) != _major_minor(here_python):
        warnings.append(f"the notebook ran Python {python}; the server runs Python {here_python}")
    try:
        here_torch: str | None = metadata.version("torch")
    except metadata.PackageNotFoundError:
        here_torch = None
    if _major_minor(torch) and _major_minor(torch) != _major_minor(here_torch):
        warnings.append(f"the notebook ran torch {torch}; the server runs torch {here_torch}")
    return warnings


def describe(requirements: list[str]) -> str:
    pins = ", ".join(requirements) if requirements else "none beyond torch"
    return f"Requirements: {pins}; torch and Python are the server's"
