"""Decide how a live value can be written into ``model.py`` without pickling it.

Three ways exist: as Python literal source, as a tensor saved next to the file,
or as an import of the object from the package that defines it.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import decimal
import fractions
import importlib
import math
import pathlib
import re
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "LITERAL_LIMIT",
    "Literal",
    "NotLiteralError",
    "TooBigError",
    "importable_as",
    "local_module_file",
    "render_literal",
    "tensor_constant",
    "type_name",
]

LITERAL_LIMIT = 5_000_000
_WIDTH = 100
_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_FACTORIES: dict[object, str] = {
    int: "int",
    float: "float",
    str: "str",
    bytes: "bytes",
    bool: "bool",
    list: "list",
    dict: "dict",
    set: "set",
    tuple: "tuple",
    None: "None",
}


class NotLiteralError(Exception):
    """``path`` locates the offending part, e.g. ``LABELS[3]``; ``value`` is that part."""

    def __init__(self, path: str, value: object) -> None:
        super().__init__(path)
        self.path = path
        self.value = value


class TooBigError(Exception):
    pass


@dataclass(frozen=True)
class Literal:
    text: str
    modules: frozenset[str]
    """Standard modules the text refers to as ``_et_<module>`` (collections, re, numpy...)."""

    @property
    def uses_collections(self) -> bool:
        return "collections" in self.modules


def _literal_form(value: object) -> tuple[str, str] | None:
    """``(source, module)`` for a value written as a constructor call of the standard library
    or NumPy: compiled patterns, dates, paths, decimals, fractions, NumPy scalars."""
    kind = type(value)
    if isinstance(value, re.Pattern):
        return f"_et_re.compile({value.pattern!r}, {int(value.flags)})", "re"
    if kind in (datetime.datetime, datetime.date, datetime.time, datetime.timedelta):
        if getattr(value, "tzinfo", None) is not None:
            return None
        return "_et_" + repr(value), "datetime"
    if kind in (pathlib.PosixPath, pathlib.PurePosixPath, pathlib.PureWindowsPath):
        return f"_et_pathlib.{kind.__name__}({str(value)!r})", "pathlib"
    if kind is decimal.Decimal:
        return f"_et_decimal.Decimal({str(value)!r})", "decimal"
    if kind is fractions.Fraction:
        assert isinstance(value, fractions.Fraction)
        return f"_et_fractions.Fraction({value.numerator}, {value.denominator})", "fractions"
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic) and kind.__module__ == "numpy":
        if value.dtype.kind not in "biufcSU" or (
            value.dtype.itemsize > 8 and value.dtype.kind in "fc"
        ):
            return None
        item = value.item()
        if isinstance(item, float) and not math.isfinite(item):
            text = f'float("{item}")'
        else:
            text = repr(item)
        return f"_et_numpy.{kind.__name__}({text})", "numpy"
    return None


def type_name(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    if module in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{module.lstrip('_')}.{kind.__qualname__}"


class _Renderer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.leaf_size = 0
        self.counting = True
        self.modules: set[str] = set()
        self._open: set[int] = set()

    def _scalar(self, value: object) -> str:
        if isinstance(value, float) and not math.isfinite(value):
            return f'float("{value}")'
        return repr(value)

    def _items(
        self, value: object, path: str
    ) -> tuple[str, str, list[tuple[str | None, object, str]]]:
        """Opening and closing text plus (key source, item, item path) for a container."""
        kind = type(value)
        if kind is list:
            assert isinstance(value, list)
            return "[", "]", [(None, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if kind is tuple:
            assert isinstance(value, tuple)
            close = ",)" if len(value) == 1 else ")"
            return "(", close, [(None, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if kind is collections.deque:
            assert isinstance(value, collections.deque)
            self.modules.add("collections")
            maxlen = "" if value.maxlen is None else f", maxlen={value.maxlen}"
            return (
                "_et_collections.deque([",
                f"]{maxlen})",
                [(None, v, f"{path}[{i}]") for i, v in enumerate(value)],
            )
        if kind in (set, frozenset):
            assert isinstance(value, set | frozenset)
            items = _sorted(value)
            prefix = "frozenset(" if kind is frozenset else ""
            if not items:
                return ("frozenset(" if kind is frozenset else "set("), ")", []
            return (
                prefix + "{",
                "}" + (")" if prefix else ""),
                [(None, v, f"{path} item") for v in items],
            )
        if kind in (dict, collections.Counter, collections.OrderedDict, collections.defaultdict):
            assert isinstance(value, dict)
            opening, closing = "{", "}"
            if kind is not dict:
                self.modules.add("collections")
                if kind is collections.defaultdict:
                    assert isinstance(value, collections.defaultdict)
                    factory = _FACTORIES.get(value.default_factory, "")
                    if not factory:
                        raise NotLiteralError(f"{path}.default_factory", value.default_factory)
                    opening = f"_et_collections.defaultdict({factory}, {{"
                else:
                    opening = f"_et_collections.{kind.__name__}({{"
                closing = "})"
            entries: list[tuple[str | None, object, str]] = []
            for key, item in value.items():
                key_text = self.flat(key, f"{path} key {key!r}")
                entries.append((key_text, item, f"{path}[{key!r}]"))
            return opening, closing, entries
        raise NotLiteralError(path, value)

    def flat(self, value: object, path: str) -> str:
        form = _literal_form(value)
        if form is not None:
            self.modules.add(form[1])
        if type(value) in _SCALARS or form is not None:
            text = self._scalar(value) if form is None else form[0]
            if self.counting:
                self.leaf_size += len(text)
                if self.leaf_size > self.limit:
                    raise TooBigError
        else:
            if id(value) in self._open:
                raise NotLiteralError(path, value)
            self._open.add(id(value))
            try:
                opening, closing, entries = self._items(value, path)
                parts = [
                    (f"{key}: " if key is not None else "") + self.flat(item, item_path)
                    for key, item, item_path in entries
                ]
            finally:
                self._open.discard(id(value))
            if closing == ",)" and not parts:
                closing = ")"
            text = opening + ", ".join(parts) + closing
        if len(text) > self.limit:
            raise TooBigError
        return text

    def pretty(self, value: object, path: str, indent: int, lead: int = 0) -> str:
        """Flat when it fits in the line (``lead`` is text before it), else one item per line."""
        text = self.flat(value, path)
        if len(text) + indent + lead <= _WIDTH or type(value) in _SCALARS:
            return text
        if _literal_form(value) is not None:
            return text
        opening, closing, entries = self._items(value, path)
        pad = " " * (indent + 4)
        lines = [opening]
        if all(
            key is None and type(item) in _SCALARS and _literal_form(item) is None
            for key, item, _ in entries
        ):
            row = ""
            for _, item, _ in entries:
                piece = self._scalar(item) + ","
                if row and len(pad) + len(row) + 1 + len(piece) > _WIDTH:
                    lines.append(pad + row)
                    row = ""
                row = f"{row} {piece}" if row else piece
            lines.extend([pad + row, " " * indent + closing.removeprefix(",")])
            return "\n".join(lines)
        for key, item, item_path in entries:
            body = self.pretty(item, item_path, indent + 4, len(key) + 2 if key else 0)
            lines.append(f"{pad}{key}: {body}," if key is not None else f"{pad}{body},")
        lines.append(" " * indent + closing.removeprefix(","))
        return "\n".join(lines)


def _sorted(items: set[Any] | frozenset[Any]) -> list[Any]:
    """Sets iterate in hash order, which changes between runs for strings."""
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, collections.deque) and isinstance(b, collections.deque):
        return a.maxlen == b.maxlen and _same(list(a), list(b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        if getattr(a, "default_factory", None) is not getattr(b, "default_factory", None):
            return False
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def render_literal(value: object, name: str, limit: int = LITERAL_LIMIT) -> Literal:
    """Source that evaluates back to an equal value of the same types.

    Counter, OrderedDict and defaultdict (with a builtin factory) keep their type
    rather than decaying to dict, because code may rely on ``counts[missing] == 0``.
    Raises NotLiteralError for anything else and TooBigError past ``limit`` characters.
    """
    renderer = _Renderer(limit)
    renderer.flat(value, name)
    renderer.counting = False
    text = renderer.pretty(value, name, 0, len(name) + 3)
    if len(text) > limit:
        raise TooBigError
    scope = {
        "__builtins__": {},
        "float": float,
        "set": set,
        "frozenset": frozenset,
        **{f"_et_{name}": importlib.import_module(name) for name in renderer.modules},
        **{factory: obj for obj, factory in _FACTORIES.items() if obj is not None},
    }
    try:
        restored = eval(text, scope)
    except Exception as error:  # pragma: no cover - a renderer bug, reported as not literal
        raise NotLiteralError(name, value) from error
    if not _same(restored, value):
        raise NotLiteralError(name, value)
    return Literal(text, frozenset(renderer.modules))


def tensor_constant(value: object) -> tuple[torch.Tensor, str] | None:
    """The tensor to save for ``value`` and the suffix that turns it back on load.

    numpy arrays come back through ``.numpy()`` so the model keeps seeing numpy.
    Returns None when ``value`` is not array-like or its dtype cannot be saved.
    """
    torch = sys.modules.get("torch")
    numpy = sys.modules.get("numpy")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized or value.is_meta:
            return None
        return value.detach().to("cpu").clone().contiguous(), ""
    if numpy is None or torch is None:
        return None
    if isinstance(value, numpy.ndarray | numpy.generic):
        array = numpy.asarray(value)
        if array.dtype.kind not in "biufc":
            return None
        array = numpy.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True)
        suffix = ".numpy()" if isinstance(value, numpy.ndarray) else ".numpy()[()]"
        return torch.from_numpy(array), suffix
    return None


def _public_prefixes(module: str) -> list[str]:
    parts = module.split(".")
    prefixes = [
        ".".join(parts[:i])
        for i in range(1, len(parts))
        if not any(part.startswith("_") for part in parts[:i])
    ]
    return [*prefixes, module]


def importable_as(value: object) -> tuple[str, str] | None:
    """``(module, attribute)`` such that ``from module import attribute`` gives ``value``.

    Prefers the shortest public path (``torch.nn`` over ``torch.nn.modules.linear``).
    """
    module_name = getattr(value, "__module__", None)
    if not isinstance(module_name, str) or module_name == "__main__":
        return None
    candidates = [getattr(value, "__qualname__", None), getattr(value, "__name__", None)]
    attrs = [a for a in candidates if isinstance(a, str) and a.isidentifier()]
    for prefix in _public_prefixes(module_name):
        module = sys.modules.get(prefix)
        if module is None:
            continue
        for attr in attrs:
            if getattr(module, attr, None) is value:
                return prefix, attr
    return None


def _installed_roots() -> list[Path]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.update(path for path in sysconfig.get_paths().values() if path)
    with contextlib.suppress(AttributeError):
        roots.update(site.getsitepackages())
    with contextlib.suppress(AttributeError):
        roots.add(site.getusersitepackages())
    return [Path(root).resolve() for root in roots]


def local_module_file(module_name: str) -> str | None:
    """The file of an imported module that lives outside the Python installation.

    Such a module (a ``utils.py`` beside the notebook) will not exist on the
    serving side unless it is shipped, which is worth telling the user.
    """
    module = sys.modules.get(module_name.partition(".")[0])
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return None
    path = Path(file).resolve()
    if any(path.is_relative_to(root) for root in _installed_roots()):
        return None
    return str(path)
