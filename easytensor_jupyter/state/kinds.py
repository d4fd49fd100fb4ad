"""Sort live values into the codecs the encoder knows, and say where a class can be found."""

from __future__ import annotations

import base64
import builtins
import datetime
import decimal
import fractions
import pathlib
import re
import sys
import types
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "ClassRef",
    "class_ref_policy",
    "is_namedtuple",
    "is_numpy_object_array",
    "literal_state",
    "object_state",
    "plain_object",
    "special_kind",
    "type_name",
]

ClassRef = Callable[[Any, bool], "dict[str, str] | None"]
"""Where the reader finds a class or function: ``{"module": ..., "name": ...}``, or None.

The flag is True for the class of an object to rebuild from its attributes, which must be the
notebook's own or a shipped local module's; any importable name will do otherwise.
"""


def _public_path(target: Any) -> dict[str, str] | None:
    module = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(name, str) or "<" in name:
        return None
    if module == "builtins":
        return {"module": module, "name": name} if getattr(builtins, name, None) is target else None
    found: Any = sys.modules.get(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    return {"module": module, "name": name} if found is target else None


def class_ref_policy(is_local_module: Callable[[str], bool]) -> ClassRef:
    """Notebook classes by name (their source goes into model.py), local modules' classes by
    module, and for functions and classes used as values, any importable path."""

    def ref(target: Any, instance_class: bool) -> dict[str, str] | None:
        module = getattr(target, "__module__", None)
        name = getattr(target, "__qualname__", "")
        if module == "__main__":
            ok = "." not in name and "<" not in name
            return {"module": "__main__", "name": name} if ok else None
        path = _public_path(target)
        if path is None or not instance_class:
            return path
        return path if is_local_module(path["module"]) else None

    return ref


def type_name(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    if module in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{module}.{kind.__qualname__}"


def is_namedtuple(value: object) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields") and type(value) is not tuple


def object_state(value: object) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for cls in reversed(type(value).__mro__):
        slots = cls.__dict__.get("__slots__", ())
        for slot in [slots] if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                state[slot] = getattr(value, slot)
    state.update(getattr(value, "__dict__", {}))
    return state


def plain_object(value: object) -> bool:
    """An instance whose whole state is its attributes: no builtin base but ``object``."""
    bases = [c for c in type(value).__mro__[1:] if c.__module__ == "builtins" and c is not object]
    return not bases and not isinstance(value, type | types.ModuleType | types.FunctionType)


def is_numpy_object_array(value: object) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray) and value.dtype.kind == "O"


def special_kind(value: object) -> str | None:
    """The codec for a value that is neither a plain container nor a notebook object."""
    torch = sys.modules.get("torch")
    numpy = sys.modules.get("numpy")
    if torch is not None:
        if isinstance(value, torch.Tensor):
            ok = value.layout == torch.strided and not value.is_quantized and not value.is_meta
            return "tensor" if ok else None
        if isinstance(value, torch.device):
            return "torch.device"
        if isinstance(value, torch.dtype):
            return "torch.dtype"
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            return "ndarray"
        if isinstance(value, numpy.generic):
            return "npscalar"
    if isinstance(value, re.Pattern):
        return "re"
    for kind in (datetime.datetime, datetime.date, datetime.time, datetime.timedelta):
        if type(value) is kind:
            return f"datetime.{kind.__name__}"
    if isinstance(value, pathlib.PurePath):
        return "path"
    if type(value) is decimal.Decimal:
        return "decimal"
    if type(value) is fractions.Fraction:
        return "fraction"
    if type(value) is uuid.UUID:
        return "uuid"
    module = type(value).__module__.partition(".")[0]
    if module == "sklearn" and _has_skops():
        return "sklearn"
    if module == "tokenizers" and type(value).__name__ == "Tokenizer":
        return "hf_tokenizer"
    return None


def _has_skops() -> bool:
    try:
        import skops.io  # noqa: F401
    except ImportError:
        return False
    return True


def literal_state(special: str, value: Any) -> Any:
    if special == "re":
        return [value.pattern if isinstance(value.pattern, str) else None, value.flags] + (
            [base64.b64encode(value.pattern).decode()] if isinstance(value.pattern, bytes) else []
        )
    if special == "datetime.timedelta":
        return [value.days, value.seconds, value.microseconds]
    if special.startswith("datetime."):
        return value.isoformat()
    if special == "path":
        return [type(value).__name__, str(value)]
    return str(value)
