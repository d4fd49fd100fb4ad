"""Value types shared by the capture modules and their callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from easytensor_jupyter.state import StateWriter

__all__ = ["CaptureError", "CapturedModel", "CellRecord"]


@dataclass(frozen=True)
class CellRecord:
    """One executed cell, in execution order.

    The source may be raw (with ``%magics``) or already transformed by IPython;
    capture accepts both.
    """

    source: str
    execution_count: int | None
    cell_id: str | None = None


@dataclass(frozen=True)
class CapturedModel:
    """A standalone ``model.py``, the tensors it loads from ``constants.safetensors``, the values
    it rebuilds from the bundle's state, and the local modules that travel with it."""

    source: str
    class_name: str
    constants: dict[str, torch.Tensor]
    captured_names: list[str]
    warnings: list[str] = field(default_factory=list)
    state: StateWriter | None = None
    local_modules: dict[str, Path] = field(default_factory=dict)


class CaptureError(Exception):
    """Raised when the model cannot be made standalone; the message is shown to the user.

    ``variable`` and ``execution_count`` let a caller point at the offending cell.
    """

    def __init__(
        self, message: str, *, variable: str | None = None, execution_count: int | None = None
    ) -> None:
        super().__init__(message)
        self.variable = variable
        self.execution_count = execution_count
