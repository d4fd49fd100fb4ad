"""Write live notebook values as data: a JSON object graph, tensors, and skops for scikit-learn.

Objects of classes defined in the notebook (or in a local module shipped with the bundle) travel
as their class's name plus their attributes; the class's source goes into ``model.py``. The
object is rebuilt with ``cls.__new__`` and its attributes set back, so ``__init__`` never reruns
and nothing is unpickled. Values are counted before they are written, so an object reachable
twice is written once and referred to after, and cycles come back as cycles.
"""

from __future__ import annotations

import base64
import collections
import enum
import io
import math
import sys
import types
from collections.abc import Iterator
from typing import Any

from easytensor_jupyter.state.kinds import (
    ClassRef,
    is_namedtuple,
    is_numpy_object_array,
    literal_state,
    object_state,
    plain_object,
    special_kind,
    type_name,
)
from easytensor_jupyter.state.nodes import TAG

__all__ = ["Encoder", "Unencodable"]

_SCALARS = (type(None), bool, int, str)
_DICTS = (dict, collections.OrderedDict, collections.Counter, collections.defaultdict)
_SEQUENCES = (list, tuple, set, frozenset, collections.deque)
_NUMERIC_KINDS = "biufc"


class Unencodable(Exception):
    """``path`` names the part (``cfg.labels[2]``), ``value`` is it, ``fix`` says what to do."""

    def __init__(self, path: str, value: object, reason: str, fix: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.value = value
        self.reason = reason
        self.fix = fix


class Encoder:
    """One pass over a set of roots; shared by every section so references cross sections."""

    def __init__(self, class_ref: ClassRef, counts: dict[int, int] | None) -> None:
        self.class_ref = class_ref
        self.counts = counts
        self.ids: dict[int, int] = {}
        self.open: set[int] = set()
        self.tensors: dict[str, Any] = {}
        self.skops: dict[str, Any] = {}
        self.keep: list[object] = []

    # -- counting pass ----------------------------------------------------------------------
    def count(self, value: object, seen: dict[int, int]) -> None:
        stack = [value]
        while stack:
            item = stack.pop()
            if type(item) in _SCALARS or isinstance(item, float | enum.Enum):
                continue
            key = id(item)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] == 1:
                self.keep.append(item)
                stack.extend(reversed(list(self._children(item))))

    def _children(self, value: object) -> Iterator[object]:
        if isinstance(value, dict) and type(value) in _DICTS:
            for key, item in value.items():
                yield key
                yield item
        elif type(value) in _SEQUENCES or is_namedtuple(value):
            yield from value  # type: ignore[misc]
        elif is_numpy_object_array(value):
            yield from value.ravel().tolist()  # type: ignore[attr-defined]
        elif self._is_custom_object(value):
            yield from object_state(value).values()

    def _is_custom_object(self, value: object) -> bool:
        kind = type(value)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.nn.Module):
            return False
        return (
            not isinstance(value, _SCALARS + _SEQUENCES + _DICTS + (float, enum.Enum))
            and plain_object(value)
            and self.class_ref(kind, True) is not None
            and not special_kind(value)
        )

    # -- writing pass -----------------------------------------------------------------------
    def encode(self, value: object, path: str) -> Any:
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is float:
            assert isinstance(value, float)
            return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}
        if isinstance(value, enum.Enum):
            return {TAG: "enum", "cls": self._ref(type(value), path, False), "name": value.name}
        key = id(value)
        if key in self.open and isinstance(value, tuple | frozenset):
            raise Unencodable(
                path,
                value,
                f"a {kind.__name__} is part of a reference cycle",
                "Break the cycle with a list or an object instead of the tuple.",
            )
        shared = self.counts is not None and self.counts.get(key, 0) > 1
        if shared and key in self.ids:
            return {TAG: "ref", "id": self.ids[key]}
        if key in self.open:
            return {TAG: "ref", "id": 0}
        node_id = None
        if shared:
            node_id = self.ids[key] = len(self.ids) + 1
        self.open.add(key)
        try:
            node = self._node(value, path)
        finally:
            self.open.discard(key)
        if node_id is not None:
            if isinstance(node, list):
                node = {TAG: "list", "items": node}
            node["id"] = node_id
        return node

    def _items(self, values: Any, path: str) -> list[Any]:
        return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(values)]

    def _node(self, value: Any, path: str) -> Any:
        kind = type(value)
        if kind is list:
            return self._items(value, path)
        if kind in (tuple, set, frozenset):
            items = list(value) if kind is tuple else sorted(value, key=repr)
            return {TAG: kind.__name__, "items": self._items(items, path)}
        if kind is collections.deque:
            return {TAG: "deque", "items": self._items(value, path), "maxlen": value.maxlen}
        if kind in _DICTS:
            return self._dict(value, path)
        if kind is bytes:
            return {TAG: "bytes", "b64": base64.b64encode(value).decode()}
        if kind is complex:
            return {TAG: "complex", "re": value.real, "im": value.imag}
        special = special_kind(value)
        if special is not None:
            return self._special_node(special, value, path)
        if isinstance(value, type | types.FunctionType | types.BuiltinFunctionType):
            return {TAG: "global", "ref": self._ref(value, path, False)}
        if is_namedtuple(value):
            return {
                TAG: "namedtuple",
                "cls": self._ref(kind, path, True),
                "items": self._items(value, path),
            }
        if self._is_custom_object(value):
            state = object_state(value)
            return {
                TAG: "obj",
                "cls": self._ref(kind, path, True),
                "state": {k: self.encode(v, f"{path}.{k}") for k, v in state.items()},
            }
        raise self._refusal(value, path)

    def _dict(self, value: dict[Any, Any], path: str) -> dict[str, Any]:
        node: dict[str, Any] = {TAG: "dict", "items": []}
        if type(value) is not dict:
            node["kind"] = type(value).__name__
        if isinstance(value, collections.defaultdict):
            factory = value.default_factory
            node["factory"] = (
                None if factory is None else self.encode(factory, f"{path}.default_factory")
            )
        for key, item in value.items():
            node["items"].append(
                [self.encode(key, f"{path} key {key!r}"), self.encode(item, f"{path}[{key!r}]")]
            )
        return node

    def _ref(self, target: Any, path: str, instance_class: bool) -> dict[str, str]:
        ref = self.class_ref(target, instance_class)
        if ref is None:
            name = getattr(target, "__qualname__", repr(target))
            module = getattr(target, "__module__", "?")
            what = "class" if isinstance(target, type) else "function"
            if isinstance(target, type) and instance_class and module != "__main__":
                raise Unencodable(
                    path,
                    target,
                    f"an object of {module}.{name}, a class from an installed "
                    "package, which is never pickled",
                    "Keep the data it holds in plain values or in a class defined in the "
                    "notebook, and build the object inside the model's __init__.",
                )
            raise Unencodable(
                path,
                target,
                f"a {what} ({module}.{name}) that a fresh Python can't find by name",
                f"Define the {what} with 'def'/'class' at the top level of a notebook cell, or "
                "import it from a package.",
            )
        return ref

    def _special_node(self, special: str, value: Any, path: str) -> dict[str, Any]:
        if special == "tensor":
            key = f"t{len(self.tensors)}"
            self.tensors[key] = value.detach().to("cpu").contiguous()
            return {TAG: "tensor", "key": key, "grad": bool(value.requires_grad)}
        if special == "ndarray":
            return self._ndarray(value, path)
        if special == "npscalar":
            return {
                TAG: "np.scalar",
                "dtype": value.dtype.str,
                "v": self.encode(value.item(), path),
            }
        if special == "sklearn":
            key = f"s{len(self.skops)}"
            self.skops[key] = value
            return {TAG: "skops", "key": key}
        if special == "hf_tokenizer":
            return {TAG: "hf_tokenizer", "json": value.to_str()}
        if special == "torch.device":
            return {TAG: "torch.device", "v": str(value)}
        if special == "torch.dtype":
            return {TAG: "torch.dtype", "v": str(value).removeprefix("torch.")}
        return {TAG: special, "v": literal_state(special, value)}

    def _ndarray(self, value: Any, path: str) -> dict[str, Any]:
        dtype = value.dtype
        if dtype.kind in _NUMERIC_KINDS and dtype.itemsize <= 8 and dtype.names is None:
            torch = sys.modules["torch"]
            array = value.astype(dtype.newbyteorder("="), order="C", copy=True)
            key = f"t{len(self.tensors)}"
            self.tensors[key] = torch.from_numpy(array)
            return {TAG: "np.array", "key": key}
        if dtype.kind in "USO" and dtype.names is None:
            flat = value.ravel().tolist()
            items = flat if dtype.kind == "U" else self._items(flat, path)
            return {TAG: "np.array", "dtype": dtype.str, "shape": list(value.shape), "data": items}
        raise Unencodable(
            path,
            value,
            f"a NumPy array of dtype {dtype}, which has no data form here",
            "Convert it to a numeric, string or object array of plain values.",
        )

    def _refusal(self, value: object, path: str) -> Unencodable:
        torch = sys.modules.get("torch")
        name = type_name(value)
        if torch is not None and isinstance(value, torch.nn.Module):
            return Unencodable(
                path,
                value,
                f"an nn.Module ({name}) that is not a registered submodule",
                "Create it inside the model's __init__ so its weights travel in the state dict.",
            )
        if isinstance(value, io.IOBase):
            return Unencodable(
                path,
                value,
                f"an open file ({name})",
                "Read what the model needs from the file into a variable (a str, list or "
                "dict), or open the file inside the model's __init__.",
            )
        if type(value).__module__.partition(".")[0] == "sklearn":
            return Unencodable(
                path,
                value,
                f"a scikit-learn {type(value).__name__}, and skops is not installed",
                "pip install 'easytensor-jupyter[sklearn]' in the notebook's environment.",
            )
        if not plain_object(value):
            return Unencodable(
                path,
                value,
                f"a {name}, which is neither plain data nor an object of a class "
                "defined in the notebook",
                "Hold the data in a plain list, dict or an object of a class of your own.",
            )
        return Unencodable(
            path,
            value,
            f"a {name}, an object of a library class, which is never pickled",
            "Build it inside the model's __init__ from data (lists, dicts, arrays), or keep the "
            "data it needs in a class defined in the notebook.",
        )
