"""Notebook state that travels as data: objects, arrays, scikit-learn estimators, never pickle.

A bundle may carry ``state.json`` (an object graph of JSON nodes), ``state.safetensors`` (the
tensors and numeric arrays inside it) and ``state.skops`` (scikit-learn objects, read back with
skops's type check). ``StateWriter`` builds them on the notebook side; ``bundle_state`` reads them
in the worker, where ``model.py`` and the loader share one reader so shared references survive.
"""

from __future__ import annotations

from easytensor_jupyter.state.decode import StateLoadError, StateReader, bundle_state, reader_for
from easytensor_jupyter.state.encode import Unencodable
from easytensor_jupyter.state.kinds import class_ref_policy
from easytensor_jupyter.state.nodes import STATE_FILES, STATE_JSON, STATE_SKOPS, STATE_TENSORS
from easytensor_jupyter.state.writer import StateWriter

__all__ = [
    "STATE_FILES",
    "STATE_JSON",
    "STATE_SKOPS",
    "STATE_TENSORS",
    "StateLoadError",
    "StateReader",
    "StateWriter",
    "Unencodable",
    "bundle_state",
    "class_ref_policy",
    "reader_for",
]
