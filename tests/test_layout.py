"""The server's layers are its folders, and imports between them flow one way.

api -> backends -> runtime; api and backends use store; runtime and store import neither api nor
a backend; the local backend does not import the Ray one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import easytensor_jupyter.inference as inference

ROOT = Path(inference.__file__).resolve().parent
PREFIX = "easytensor_jupyter.inference."

# layer -> layers it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "runtime": ("api", "backends", "store", "app", "server", "state"),
    "store": ("api", "backends", "runtime", "app", "server", "state"),
    "backends": ("api", "app", "server", "state"),
    "backends.local": ("backends.ray",),
    "api": ("app", "server"),
}


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "backends" and len(parts) > 1 and parts[1] in ("local", "ray"):
        return ".".join(parts[:2])
    return parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every inference module this file imports, also inside functions and TYPE_CHECKING."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            package = base == PREFIX.rstrip(".")
            names = [f"{base}.{alias.name}" for alias in node.names] if package else [base]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; use absolute imports")
        for name in names:
            if name.startswith(PREFIX):
                found.append((node.lineno, name[len(PREFIX) :]))
    return found


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _violations() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        own = _module(path)
        own_layers = {own.split(".")[0], _layer(own)}
        for lineno, target in _imports(path):
            for layer in own_layers:
                for forbidden in FORBIDDEN.get(layer, ()):
                    if target == forbidden or target.startswith(forbidden + "."):
                        bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {target}")
    return bad


def test_imports_flow_one_way() -> None:
    assert _violations() == []


def test_the_checker_sees_a_wrong_way_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "inference"
    (fake / "runtime").mkdir(parents=True)
    (fake / "runtime" / "bad.py").write_text(
        "from easytensor_jupyter.inference.api.errors import APIError\n"
    )
    (fake / "store").mkdir()
    (fake / "store" / "ok.py").write_text("import os\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    assert _violations() == ["runtime/bad.py:1 imports api.errors"]


@pytest.mark.parametrize(
    "folder", ["api", "backends", "backends/local", "backends/ray", "runtime", "store"]
)
def test_each_layer_is_a_folder(folder: str) -> None:
    assert (ROOT / folder / "__init__.py").is_file()


def test_modules_stay_small() -> None:
    big = {
        str(path.relative_to(ROOT)): n
        for path in ROOT.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 420
    }
    assert big == {}
