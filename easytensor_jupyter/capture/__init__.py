"""Turn a notebook's model class into a standalone ``model.py``.

``capture_model`` copies the class and everything it needs from earlier cells
(imports, helpers, JSON-like constants, tensors) without pickling anything;
``ConstructionRecorder`` remembers how each model instance was constructed so
the endpoint can build the same model.
"""

from __future__ import annotations

from ._capture import capture_model, new_state_writer
from ._emit import CONSTANTS_FILE
from ._history import history_from_shell
from ._recorder import ConstructionRecorder, InitArgs
from ._types import CapturedModel, CaptureError, CellRecord

__all__ = [
    "CONSTANTS_FILE",
    "CaptureError",
    "CapturedModel",
    "CellRecord",
    "ConstructionRecorder",
    "InitArgs",
    "capture_model",
    "history_from_shell",
    "new_state_writer",
]
