"""What the capture says when it must refuse: the name, its cell ``[N]``, its type, a fix."""

from __future__ import annotations

import sys
import types

from easytensor_jupyter.state import Unencodable

from ._history import Index
from ._types import CaptureError
from ._values import type_name

__all__ = ["Refusals"]


def _is_lambda(value: object) -> bool:
    return isinstance(value, types.FunctionType) and value.__name__ == "<lambda>"


class Refusals:
    def __init__(self, index: Index, class_name: str) -> None:
        self.index = index
        self.class_name = class_name

    def undefined(self, name: str, user: str) -> CaptureError:
        binding = self.index.latest(name)
        if binding is not None:
            label = binding.cell.label
            return CaptureError(
                f"{user} uses '{name}', which {label} set, but '{name}' no longer exists in "
                f"the kernel (deleted, or the cell failed). Re-run {label}, then this cell.",
                variable=name,
                execution_count=binding.cell.record.execution_count,
            )
        return CaptureError(
            f"{user} uses '{name}', but '{name}' is not defined anywhere in the notebook. "
            f"Define it in a cell and run that cell, or define it inside class {self.class_name}.",
            variable=name,
        )

    def located(self, name: str) -> tuple[str, int | None]:
        binding = self.index.latest(name)
        if binding is None:
            return "", None
        return f" ({binding.cell.label})", binding.cell.record.execution_count

    def code(self, name: str, value: object, user: str, detail: str = "") -> CaptureError:
        where, count = self.located(name)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.nn.Module):
            what = f"an instance of {type_name(value)} (an nn.Module)"
            advice = (
                f"Create it inside {self.class_name}.__init__ instead; "
                "its weights then travel in the state dict."
            )
        elif _is_lambda(value):
            what = f"a lambda that isn't assigned by a top-level '{name} = lambda ...' line"
            advice = f"Define '{name}' with 'def' at the top level of a cell instead."
        elif isinstance(value, type | types.FunctionType | types.BuiltinFunctionType):
            origin = f"{value.__module__}.{value.__qualname__}"
            what = f"{origin}, which can't be imported by that name"
            advice = (
                f"Import '{name}' with an import line that works in a fresh Python, "
                "or define it at the top level of a cell."
            )
        else:
            what = f"a {type_name(value)} that can't be imported or copied as source"
            advice = f"Create it inside {self.class_name}.__init__ instead."
        return CaptureError(
            f"Can't put '{name}'{where} into model.py: it is {what}{detail}, used by {user}. "
            f"Nothing is pickled. {advice}",
            variable=name,
            execution_count=count,
        )

    def unencodable(self, name: str, value: object, user: str, error: Unencodable) -> CaptureError:
        where, count = self.located(name)
        what = error.reason
        if error.path != name:
            what = f"a {type_name(value)} holding at {error.path} {error.reason}"
        return CaptureError(
            f"Can't put '{name}'{where} into model.py: it is {what}, used by {user}. "
            f"Nothing is pickled. {error.fix}",
            variable=name,
            execution_count=count,
        )
