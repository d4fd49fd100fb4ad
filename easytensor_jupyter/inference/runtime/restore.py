"""Make the built model match the notebook's beyond the weights' values.

The class's ``__init__`` builds float32 parameters, leaves attributes set after training unset,
and knows nothing of frozen parameters; the bundle records all three. Local modules shipped in
``modules.zip`` go first on ``sys.path`` so ``model.py``'s imports of them work unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from easytensor_jupyter.bundle import MODULES_FILE
from easytensor_jupyter.state import StateReader

__all__ = ["MODULES_ZIP", "add_shipped_modules", "apply_saved_dtypes", "apply_state"]

MODULES_ZIP = MODULES_FILE
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def add_shipped_modules(directory: Path) -> None:
    archive = directory / MODULES_ZIP
    if archive.is_file() and str(archive) not in sys.path:
        sys.path.insert(0, str(archive))


def apply_saved_dtypes(model: torch.nn.Module, weights: Path) -> None:
    """Cast each parameter and buffer to its saved dtype, so loading keeps float64, bf16..."""
    with safe_open(str(weights), framework="pt") as fh:
        saved = {key: fh.get_slice(key).get_dtype() for key in fh.keys()}  # noqa: SIM118
    tensors: dict[str, Any] = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    for key, code in saved.items():
        dtype = _DTYPES.get(code)
        target = tensors.get(key)
        if dtype is None or target is None or target.dtype == dtype:
            continue
        with torch.no_grad():
            target.data = target.data.to(dtype)


def apply_state(model: torch.nn.Module, reader: StateReader, namespace: dict[str, Any]) -> None:
    """Set the attributes that differed from a fresh instance, and the frozen flags."""
    for where, attrs in reader.attrs(namespace).items():
        module = model.get_submodule(where) if where else model
        for attr, value in attrs.items():
            setattr(module, attr, value)
    frozen = reader.frozen()
    if frozen is not None:
        for name, param in model.named_parameters():
            param.requires_grad_(name not in frozen)
