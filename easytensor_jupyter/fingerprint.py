"""Hashes of what a version is made of, recorded in its manifest, so that a kernel can tell
what it would deploy differently without uploading anything.

The fingerprint names its parts at the level a user thinks in: each method of the model
class, each helper and constant ``model.py`` defines, each weight tensor, the data files, the
requirements. Two fingerprints compare part by part (``drift.compare``).
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "FINGERPRINT_VERSION",
    "class_parts",
    "fingerprint",
    "helper_parts",
    "tensor_entry",
    "weight_parts",
]

FINGERPRINT_VERSION = 1
_DATA_FILES = (
    "constants.safetensors",
    "state.json",
    "state.safetensors",
    "state.skops",
    "modules.zip",
)


def _sha(text: str | bytes) -> str:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(raw).hexdigest()


def _segment(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node) or ast.dump(node)


def class_parts(source: str, class_name: str) -> dict[str, str]:
    """Hash per method of ``class_name``; ``<class>`` hashes the rest (bases, class attributes)."""
    tree = ast.parse(source)
    node = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None
    )
    if node is None:
        return {"<class>": _sha(source)}
    parts: dict[str, str] = {}
    rest: list[str] = [ast.dump(base) for base in node.bases]
    rest += [_segment(source, d) for d in node.decorator_list]
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            parts[item.name] = _sha(_segment(source, item))
        else:
            rest.append(_segment(source, item))
    parts["<class>"] = _sha("\n".join(rest))
    return parts


def _names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [f"import {(a.asname or a.name)}" for a in node.names]
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return names or [f"line {node.lineno}"]


def helper_parts(source: str, class_name: str) -> dict[str, str]:
    """Hash per top-level name ``model.py`` binds besides the model class (helpers, constants,
    imports), so a drift can name what changed."""
    tree = ast.parse(source)
    parts: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        text = _segment(source, node)
        for name in _names(node):
            parts[name] = _sha(parts.get(name, "") + text)
    return parts


def tensor_entry(tensor: torch.Tensor) -> dict[str, Any]:
    """Hash of one tensor's values with its dtype and shape."""
    value = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{value.dtype}|{list(value.shape)}|".encode())
    if value.numel():
        digest.update(value.reshape(-1).view(torch.uint8).numpy().data)  # no copy
    return {"sha256": digest.hexdigest(), "dtype": str(value.dtype), "shape": list(value.shape)}


def weight_parts(model: torch.nn.Module) -> dict[str, dict[str, Any]]:
    return {name: tensor_entry(t) for name, t in model.state_dict().items()}


def fingerprint(
    *,
    source: str,
    class_name: str,
    weights: Mapping[str, dict[str, Any]],
    files: Mapping[str, str],
    init: Any,
    requirements: list[str],
) -> dict[str, Any]:
    """The manifest's ``fingerprint``; ``files`` maps bundle file names to their sha256."""
    data = {name: files[name] for name in _DATA_FILES if name in files}
    data["constructor arguments"] = _sha(json.dumps(init, sort_keys=True, default=repr))
    return {
        "version": FINGERPRINT_VERSION,
        "class": class_parts(source, class_name),
        "helpers": helper_parts(source, class_name),
        "data": data,
        "weights": dict(weights),
        "requirements": sorted(requirements),
    }
