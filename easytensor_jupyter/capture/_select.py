"""Find the model class in the ``%%easytensor_model`` cell."""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from typing import Any

from ._history import Binding, Cell, Index
from ._types import CaptureError

__all__ = ["find_model_class"]

_METHOD = "predict_single"


def _defines_method(node: ast.ClassDef) -> bool:
    return any(
        isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == _METHOD
        for item in node.body
    )


def _is_model(node: ast.ClassDef, namespace: Mapping[str, Any]) -> tuple[bool, bool]:
    """(is an nn.Module, has predict_single), from the live class when the cell has run.

    The live class also sees methods inherited from helper base classes.
    """
    live = namespace.get(node.name)
    torch = sys.modules.get("torch")
    if isinstance(live, type) and torch is not None:
        return issubclass(live, torch.nn.Module), callable(getattr(live, _METHOD, None))
    return True, _defines_method(node)


def find_model_class(cell: Cell, namespace: Mapping[str, Any], class_name: str | None) -> Binding:
    """The class statement to publish; ``class_name=None`` picks the only candidate."""
    classes = [b for b in Index([cell]).bindings_of_kind("def") if isinstance(b.node, ast.ClassDef)]
    names = ", ".join(sorted({b.name for b in classes})) or "none"
    if class_name is not None:
        matches = [b for b in classes if b.name == class_name]
        if not matches:
            raise CaptureError(
                f"This cell does not define class '{class_name}' (classes here: {names}). "
                "Put the model class in this cell, or pass the name of one defined here.",
                variable=class_name,
            )
        chosen = matches[-1]
        assert isinstance(chosen.node, ast.ClassDef)
        module, method = _is_model(chosen.node, namespace)
        if not module:
            raise CaptureError(
                f"Class '{class_name}' is not an nn.Module subclass; EasyTensor publishes "
                "torch.nn.Module models. Make it subclass nn.Module.",
                variable=class_name,
            )
        if not method:
            raise CaptureError(
                f"Class '{class_name}' has no predict_single(self, input) method. Add one: the "
                "endpoint calls it once per request with the decoded input.",
                variable=class_name,
            )
        return chosen
    latest: dict[str, Binding] = {b.name: b for b in classes}
    candidates = []
    for binding in latest.values():
        assert isinstance(binding.node, ast.ClassDef)
        if all(_is_model(binding.node, namespace)):
            candidates.append(binding)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        modules = [b.name for b in latest.values() if _is_model(b.node, namespace)[0]]  # type: ignore[arg-type]
        if len(modules) == 1:
            raise CaptureError(
                f"Class '{modules[0]}' has no predict_single(self, input) method. Add one: the "
                "endpoint calls it once per request with the decoded input, e.g.\n"
                "    def predict_single(self, input):\n"
                "        return self(torch.tensor(input)).tolist()",
                variable=modules[0],
            )
        raise CaptureError(
            "This cell defines no nn.Module class with a predict_single(self, input) method "
            f"(classes here: {names}). Add predict_single(self, input) to the model class: the "
            "endpoint calls it once per request with the decoded input."
        )
    found = ", ".join(b.name for b in candidates)
    raise CaptureError(
        f"This cell defines several model classes with predict_single ({found}). "
        "Pass the name of the one to publish."
    )
