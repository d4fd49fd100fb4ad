"""Read a bundle's state back in the worker: objects rebuilt from their class and attributes.

``model.py`` calls ``bundle_state(__file__, globals())`` for its globals as it is imported; the
loader then asks the same reader for the constructor arguments and the attributes to set on the
built model, so an object shared between a global and an attribute is still one object.
scikit-learn objects load through skops, trusting scikit-learn's, NumPy's and SciPy's types only.
"""

from __future__ import annotations

import base64
import builtins
import collections
import datetime
import decimal
import fractions
import importlib
import json
import pathlib
import re
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easytensor_jupyter.state.nodes import (
    FORMAT,
    STATE_JSON,
    STATE_SKOPS,
    STATE_TENSORS,
    TAG,
    TRUSTED_PREFIXES,
)

__all__ = ["StateLoadError", "StateReader", "bundle_state", "reader_for"]

_readers: dict[Path, StateReader] = {}
_lock = threading.Lock()
_DICT_KINDS: dict[str, type] = {
    "OrderedDict": collections.OrderedDict,
    "Counter": collections.Counter,
    "defaultdict": collections.defaultdict,
}
_PATHS = {cls.__name__: cls for cls in (pathlib.PurePosixPath, pathlib.PureWindowsPath)}
_PATHS.update({"PosixPath": pathlib.PosixPath, "WindowsPath": pathlib.PureWindowsPath})


class StateLoadError(RuntimeError):
    """The state files are missing, malformed, or name a class the bundle does not define."""


def reader_for(directory: Path) -> StateReader:
    key = directory.resolve()
    with _lock:
        reader = _readers.get(key)
        if reader is None:
            reader = _readers[key] = StateReader(key)
        return reader


def bundle_state(model_file: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The globals ``model.py`` stores as data, decoded with its own classes in ``namespace``."""
    return reader_for(Path(model_file).parent).globals(namespace)


class StateReader:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.memo: dict[int, Any] = {}
        self._doc: dict[str, Any] | None = None
        self._tensors: dict[str, Any] | None = None
        self._skops: dict[str, Any] | None = None
        self._globals: dict[str, Any] | None = None
        self._namespace: Mapping[str, Any] = {}

    @property
    def present(self) -> bool:
        return (self.directory / STATE_JSON).is_file()

    def _document(self) -> dict[str, Any]:
        if self._doc is None:
            try:
                doc = json.loads((self.directory / STATE_JSON).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise StateLoadError(f"{STATE_JSON} cannot be read: {exc}") from None
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise StateLoadError(f"{STATE_JSON} is not a state file of format {FORMAT}")
            self._doc = doc
        return self._doc

    def globals(self, namespace: Mapping[str, Any]) -> dict[str, Any]:
        if self._globals is None:
            self._namespace = namespace
            nodes = self._document().get("globals", {})
            self._globals = {k: self._decode(v, k) for k, v in nodes.items()}
        return self._globals

    def init(self, namespace: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]] | None:
        """Constructor arguments, when the bundle carries them as state rather than JSON."""
        if not self.present:
            return None
        self.globals(namespace)
        node = self._document().get("init")
        if not node:
            return None
        args = [self._decode(v, f"init[{i}]") for i, v in enumerate(node.get("args", []))]
        kwargs = {k: self._decode(v, k) for k, v in node.get("kwargs", {}).items()}
        return args, kwargs

    def attrs(self, namespace: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """``{submodule path: {attribute: value}}`` to set after the model is built."""
        if not self.present:
            return {}
        self.globals(namespace)
        return {
            where: {a: self._decode(v, f"{where or 'model'}.{a}") for a, v in attrs.items()}
            for where, attrs in self._document().get("attrs", {}).items()
        }

    def frozen(self) -> set[str] | None:
        """Parameters to leave with ``requires_grad`` off, or None when the bundle doesn't say."""
        if not self.present:
            return None
        return set(self._document().get("frozen", []))

    # -- nodes ------------------------------------------------------------------------------
    def _decode(self, node: Any, path: str) -> Any:
        if isinstance(node, list):
            return [self._decode(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        tag = node.get(TAG)
        node_id = node.get("id")
        if tag == "ref":
            try:
                return self.memo[node["id"]]
            except KeyError:
                raise StateLoadError(f"{path}: reference to an unknown object") from None
        handler = getattr(self, f"_tag_{str(tag).replace('.', '_')}", None)
        if handler is None:
            raise StateLoadError(f"{path}: unknown node type {tag!r} in {STATE_JSON}")
        try:
            value = handler(node, path, node_id)
        except StateLoadError:
            raise
        except Exception as exc:
            raise StateLoadError(f"{path}: {type(exc).__name__}: {exc}") from None
        if node_id is not None:
            self.memo.setdefault(node_id, value)
        return value

    def _register(self, node_id: Any, value: Any) -> Any:
        if node_id is not None:
            self.memo[node_id] = value
        return value

    def _items(self, node: dict[str, Any], path: str) -> list[Any]:
        return [self._decode(v, f"{path}[{i}]") for i, v in enumerate(node["items"])]

    def _tag_list(self, node: dict[str, Any], path: str, node_id: Any) -> list[Any]:
        out: list[Any] = self._register(node_id, [])
        out.extend(self._items(node, path))
        return out

    def _tag_tuple(self, node: dict[str, Any], path: str, node_id: Any) -> tuple[Any, ...]:
        return tuple(self._items(node, path))

    def _tag_set(self, node: dict[str, Any], path: str, node_id: Any) -> set[Any]:
        return set(self._items(node, path))

    def _tag_frozenset(self, node: dict[str, Any], path: str, node_id: Any) -> frozenset[Any]:
        return frozenset(self._items(node, path))

    def _tag_deque(self, node: dict[str, Any], path: str, node_id: Any) -> collections.deque[Any]:
        out: collections.deque[Any] = self._register(
            node_id, collections.deque(maxlen=node.get("maxlen"))
        )
        out.extend(self._items(node, path))
        return out

    def _tag_dict(self, node: dict[str, Any], path: str, node_id: Any) -> dict[Any, Any]:
        kind = _DICT_KINDS.get(node.get("kind", ""), dict)
        out: dict[Any, Any]
        if kind is collections.defaultdict:
            factory = node.get("factory")
            made = None if factory is None else self._decode(factory, f"{path}.default_factory")
            out = collections.defaultdict(made)
        else:
            out = kind()
        self._register(node_id, out)
        for key, item in node["items"]:
            decoded_key = self._decode(key, f"{path} key")
            out[decoded_key] = self._decode(item, f"{path}[{decoded_key!r}]")
        return out

    def _tag_float(self, node: dict[str, Any], path: str, node_id: Any) -> float:
        return float(node["v"])

    def _tag_bytes(self, node: dict[str, Any], path: str, node_id: Any) -> bytes:
        return base64.b64decode(node["b64"])

    def _tag_complex(self, node: dict[str, Any], path: str, node_id: Any) -> complex:
        return complex(node["re"], node["im"])

    def _find(self, ref: dict[str, str], path: str) -> Any:
        module, name = ref["module"], ref["name"]
        if module == "__main__":
            if name not in self._namespace:
                raise StateLoadError(
                    f"{path}: model.py defines no {name!r}, which this value needs"
                )
            return self._namespace[name]
        target: Any = builtins if module == "builtins" else importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
        return target

    def _tag_enum(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        return self._find(node["cls"], path)[node["name"]]

    def _tag_global(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        return self._find(node["ref"], path)

    def _tag_namedtuple(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        return self._find(node["cls"], path)._make(self._items(node, path))

    def _tag_obj(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        cls = self._find(node["cls"], path)
        value = object.__new__(cls) if cls.__new__ is object.__new__ else cls.__new__(cls)
        self._register(node_id, value)
        for attr, item in node["state"].items():
            object.__setattr__(value, attr, self._decode(item, f"{path}.{attr}"))
        return value

    def _tensor_file(self) -> dict[str, Any]:
        if self._tensors is None:
            from safetensors.torch import load_file

            self._tensors = load_file(str(self.directory / STATE_TENSORS))
        return self._tensors

    def _tag_tensor(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        tensor = self._tensor_file()[node["key"]]
        if node.get("grad") and tensor.is_floating_point():
            tensor.requires_grad_(True)
        return tensor

    def _tag_np_array(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        import numpy

        if "key" in node:
            return self._tensor_file()[node["key"]].numpy()
        dtype = numpy.dtype(node["dtype"])
        data = node["data"] if dtype.kind == "U" else self._items({"items": node["data"]}, path)
        if dtype.kind == "O":
            array = numpy.empty(len(data), dtype=object)
            for i, item in enumerate(data):
                array[i] = item
        else:
            array = numpy.array(data, dtype=dtype)
        return array.reshape(node["shape"])

    def _tag_np_scalar(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        import numpy

        return numpy.dtype(node["dtype"]).type(self._decode(node["v"], path))

    def _tag_skops(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        if self._skops is None:
            self._skops = _load_skops(self.directory / STATE_SKOPS)
        return self._skops[node["key"]]

    def _tag_hf_tokenizer(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        from tokenizers import Tokenizer

        return Tokenizer.from_str(node["json"])

    def _tag_torch_device(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        import torch

        return torch.device(node["v"])

    def _tag_torch_dtype(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        import torch

        return getattr(torch, node["v"])

    def _tag_re(self, node: dict[str, Any], path: str, node_id: Any) -> re.Pattern[Any]:
        pattern, flags, *raw = node["v"]
        return re.compile(base64.b64decode(raw[0]) if raw else pattern, flags)

    def _tag_datetime_datetime(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        return datetime.datetime.fromisoformat(node["v"])

    def _tag_datetime_date(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        return datetime.date.fromisoformat(node["v"])

    def _tag_datetime_time(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        return datetime.time.fromisoformat(node["v"])

    def _tag_datetime_timedelta(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        days, seconds, micro = node["v"]
        return datetime.timedelta(days=days, seconds=seconds, microseconds=micro)

    def _tag_path(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        kind, text = node["v"]
        return _PATHS.get(kind, pathlib.PurePath)(text)

    def _tag_decimal(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        return decimal.Decimal(node["v"])

    def _tag_fraction(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        return fractions.Fraction(node["v"])

    def _tag_uuid(self, node: dict[str, Any], path: str, node_id: Any) -> Any:
        return uuid.UUID(node["v"])


def _load_skops(path: Path) -> dict[str, Any]:
    """Load with skops, refusing any type outside scikit-learn, NumPy and SciPy by name."""
    try:
        import skops.io
    except ImportError:
        raise StateLoadError(
            "this model holds scikit-learn objects, and skops is not installed on the server: "
            "pip install 'easytensor-jupyter[sklearn]'"
        ) from None
    data = path.read_bytes()
    untrusted = skops.io.get_untrusted_types(data=data)
    refused = sorted(t for t in untrusted if not t.startswith(TRUSTED_PREFIXES))
    if refused:
        raise StateLoadError(
            f"{STATE_SKOPS} holds types that are not scikit-learn's, NumPy's or SciPy's, so "
            f"they are not loaded: {', '.join(refused)}"
        )
    loaded = skops.io.loads(data, trusted=untrusted)
    if not isinstance(loaded, dict):
        raise StateLoadError(f"{STATE_SKOPS} does not hold a mapping of objects")
    return loaded
