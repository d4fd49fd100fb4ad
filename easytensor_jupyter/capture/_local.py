"""Local modules the model imports (a ``utils.py`` beside the notebook) travel inside the bundle.

Only modules outside this Python's installed packages and under the notebook's folder or a
folder the notebook put on ``sys.path`` are shipped, with the local modules they import in turn.
They go into ``modules.zip``, which the worker puts first on ``sys.path``: the imports in
``model.py`` then work unchanged, and nothing is unpacked on the server.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ._values import local_module_file

__all__ = ["MAX_SHIPPED_BYTES", "find_local_modules", "local_top_level", "write_modules_zip"]

MAX_SHIPPED_BYTES = 20 << 20


def _distributed() -> frozenset[str]:
    """Top-level modules that some installed distribution provides."""
    return frozenset(metadata.packages_distributions())


def _search_roots() -> list[Path]:
    roots = [Path.cwd().resolve()]
    for entry in sys.path:
        if entry and Path(entry).is_dir():
            roots.append(Path(entry).resolve())
    return roots


def local_top_level(module_name: str) -> Path | None:
    """The file (or package folder) of a top-level module that must be shipped, else None."""
    top = module_name.partition(".")[0]
    if top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return None
    if top in _distributed():
        return None  # installed (with its metadata) somewhere on sys.path: a requirement
    file = local_module_file(top)
    if file is None:
        return None
    path = Path(file)
    root = path.parent if path.name == "__init__.py" else path
    if not any(root.is_relative_to(base) for base in _search_roots()):
        return None
    return root


def _imported_tops(path: Path) -> set[str]:
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    tops: set[str] = set()
    for file in files:
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                tops.add(node.module.partition(".")[0])
    return tops


def find_local_modules(tops: Iterable[str]) -> dict[str, Path]:
    """The given local modules and every local module they import, transitively."""
    found: dict[str, Path] = {}
    queue = list(tops)
    while queue:
        top = queue.pop()
        if top in found:
            continue
        root = local_top_level(top)
        if root is None:
            continue
        found[top] = root
        queue.extend(sorted(_imported_tops(root) - set(found)))
    return dict(sorted(found.items()))


def _members(modules: dict[str, Path]) -> list[tuple[str, Path]]:
    members: list[tuple[str, Path]] = []
    for top, root in modules.items():
        if root.is_dir():
            for file in sorted(root.rglob("*.py")):
                if "__pycache__" not in file.parts:
                    members.append((f"{top}/{file.relative_to(root).as_posix()}", file))
        else:
            members.append((f"{top}.py", root))
    return members


def write_modules_zip(modules: dict[str, Path], target: Path) -> list[str]:
    """Write the modules' source files (never bytecode) into ``target``; returns their names."""
    members = _members(modules)
    total = sum(path.stat().st_size for _, path in members)
    if total > MAX_SHIPPED_BYTES:
        raise ValueError(
            f"the local modules {', '.join(modules)} hold {total / 1e6:.1f} MB of source, over "
            f"the {MAX_SHIPPED_BYTES >> 20} MB that travels with a model; install them as a "
            "package on the server instead"
        )
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return [name for name, _ in members]
