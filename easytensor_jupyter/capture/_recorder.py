"""Remember how notebook models were constructed and what they were last asked.

``clf = Sentiment(hidden=8)`` must deploy as ``Sentiment(hidden=8)``; the
arguments are gone once ``__init__`` returns, so the recorder wraps the
``__init__`` of every ``nn.Module`` class defined in the notebook after each
cell runs. Records are keyed by instance, not class, so a model built from a
class that was later re-defined is still found.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import sys
import weakref
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["ConstructionRecorder", "InitArgs"]

_V = TypeVar("_V")
_MARK = "__easytensor_recorder__"
_MISSING = object()


@dataclass(frozen=True)
class InitArgs:
    """Constructor arguments of one instance.

    JSON values are kept as JSON copies; anything else (a config object, a tensor, a dict with
    int keys) is kept as a copy of the object, to travel as state. ``bad_argument`` names the
    first such argument and ``bad_type`` its type.
    """

    class_name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    bad_argument: str | None = None
    bad_type: str | None = None

    @property
    def is_json(self) -> bool:
        return self.bad_argument is None


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _numpy_scalar(value: Any) -> Any:
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic) and value.dtype.kind in "biuf":
        return value.item()
    raise TypeError(type(value).__name__)


def _json_copy(value: Any) -> tuple[bool, Any]:
    """A JSON round-tripped copy, and whether it equals the original.

    Tuples count as lists: JSON has no tuples, and ``hidden=(64, 32)`` is too
    common to refuse. numpy scalars count as numbers, for ``num_classes=y.max() + 1``.
    """
    try:
        copy = json.loads(json.dumps(value, allow_nan=False, default=_numpy_scalar))
    except (TypeError, ValueError, RecursionError):
        return False, None
    try:
        return bool(copy == _plain(value)), copy
    except Exception:
        return False, None


def _copied(value: Any) -> Any:
    ok, copy = _json_copy(value)
    if ok:
        return copy
    try:
        return deepcopy(value)
    except Exception:
        return value


class _WeakIdMap(Generic[_V]):
    """Per-object values that vanish with the object.

    Keyed by identity rather than hash, because an ``nn.Module`` subclass that
    defines ``__eq__`` is unhashable and would break a WeakKeyDictionary.
    """

    def __init__(self) -> None:
        self._data: dict[int, tuple[weakref.ref[Any], _V]] = {}

    def set(self, obj: object, value: _V) -> None:
        key = id(obj)
        data = self._data

        def forget(ref: weakref.ref[Any]) -> None:
            entry = data.get(key)
            if entry is not None and entry[0] is ref:
                del data[key]

        data[key] = (weakref.ref(obj, forget), value)

    def find(self, obj: object) -> tuple[bool, _V | None]:
        entry = self._data.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return False, None
        return True, entry[1]


def _describe(
    signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, Any] | None:
    """The first argument that is not JSON, named as the caller would name it."""
    if signature is not None:
        try:
            bound = signature.bind_partial(None, *args, **kwargs)
        except TypeError:
            bound = None
        if bound is not None:
            params = signature.parameters
            for name, value in list(bound.arguments.items())[1:]:
                kind = params[name].kind
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    items = [(f"{name}[{i}]", v) for i, v in enumerate(value)]
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    items = list(value.items())
                else:
                    items = [(name, value)]
                for label, item in items:
                    if not _json_copy(item)[0]:
                        return label, item
    for position, item in enumerate(args):
        if not _json_copy(item)[0]:
            return f"#{position + 1}", item
    for name, item in kwargs.items():
        if not _json_copy(item)[0]:
            return name, item
    return None


def _outermost(instance: object, attr: str, wrapper: Callable[..., Any]) -> bool:
    """Whether the method the instance's class resolves first is ``wrapper`` (maybe re-wrapped).

    When a subclass with its own, not yet wrapped, ``__init__`` calls ``super().__init__``,
    the base's wrapper sees the inner call and must not record it as the construction.
    """
    function = getattr(type(instance), attr, None)
    for _ in range(8):
        if function is wrapper:
            return True
        function = getattr(function, "__wrapped__", None)
        if function is None:
            break
    return False


def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


class ConstructionRecorder:
    """Records constructor arguments and the last ``predict_single`` input per model instance."""

    def __init__(self) -> None:
        self._inits: _WeakIdMap[InitArgs] = _WeakIdMap()
        self._inputs: _WeakIdMap[Any] = _WeakIdMap()
        self._constructing: set[int] = set()
        self._predicting: set[int] = set()
        self._patches: list[tuple[weakref.ref[type], str, Callable[..., Any], Any]] = []
        self._shell: Any = None
        self.cell_ids: dict[int, str] = {}
        """Execution count -> front-end cell id, for ``history_from_shell``."""

    def __reduce__(self) -> tuple[type[ConstructionRecorder], tuple[()]]:
        """Pickling a notebook class by value (cloudpickle, Ray) carries our wrappers along;
        on the other side they get an empty recorder instead of failing on weakrefs."""
        return (ConstructionRecorder, ())

    def install(self, shell: Any) -> None:
        """Start recording after every cell of ``shell``; classes already defined are wrapped now."""
        if self._shell is shell:
            return
        if self._shell is not None:
            self.uninstall()
        shell.events.register("post_run_cell", self._after_cell)
        self._shell = shell
        self.scan(shell.user_ns)

    def uninstall(self) -> None:
        """Stop recording and put the original methods back; existing records stay readable."""
        if self._shell is not None:
            with contextlib.suppress(ValueError):
                self._shell.events.unregister("post_run_cell", self._after_cell)
            self._shell = None
        for class_ref, attr, wrapper, original in reversed(self._patches):
            cls = class_ref()
            if cls is None or cls.__dict__.get(attr) is not wrapper:
                continue
            if original is _MISSING:
                delattr(cls, attr)
            else:
                setattr(cls, attr, original)
        self._patches.clear()

    def _after_cell(self, result: Any = None) -> None:
        info = getattr(result, "info", None)
        count = getattr(result, "execution_count", None)
        cell_id = getattr(info, "cell_id", None)
        if isinstance(count, int) and isinstance(cell_id, str):
            self.cell_ids[count] = cell_id
        if self._shell is not None:
            self.scan(self._shell.user_ns)

    def scan(self, namespace: Mapping[str, Any]) -> list[type]:
        """Wrap notebook model classes not seen yet; returns the classes wrapped now.

        Call it directly to record instances built later in the same cell that
        defined their class (the post-cell hook runs too late for those).
        """
        torch = sys.modules.get("torch")
        if torch is None:
            return []
        module_type = torch.nn.Module
        wrapped: list[type] = []
        for value in list(namespace.values()):
            if not (isinstance(value, type) and issubclass(value, module_type)):
                continue
            for cls in reversed(value.__mro__):
                main_model = cls.__module__ == "__main__" and issubclass(cls, module_type)
                if main_model and self._wrap_class(cls):
                    wrapped.append(cls)
        return wrapped

    def _is_ours(self, function: object) -> bool:
        return getattr(function, _MARK, None) is self

    def _patch(self, cls: type, attr: str, wrapper: Callable[..., Any]) -> None:
        original = cls.__dict__.get(attr, _MISSING)
        setattr(wrapper, _MARK, self)
        setattr(cls, attr, wrapper)
        self._patches.append((weakref.ref(cls), attr, wrapper, original))

    def _wrap_class(self, cls: type) -> bool:
        changed = False
        own_init = cls.__dict__.get("__init__")
        if own_init is not None:
            if inspect.isfunction(own_init) and not self._is_ours(own_init):
                self._patch(cls, "__init__", self._init_wrapper(cls, own_init))
                changed = True
        elif not self._is_ours(getattr(cls, "__init__", None)):
            self._patch(cls, "__init__", self._init_wrapper(cls, None))
            changed = True
        predict = cls.__dict__.get("predict_single")
        if inspect.isfunction(predict) and not self._is_ours(predict):
            self._patch(cls, "predict_single", self._predict_wrapper(predict))
            changed = True
        return changed

    def _init_wrapper(self, cls: type, original: Callable[..., Any] | None) -> Callable[..., Any]:
        """Wraps ``original``, or, for a class without its own ``__init__``, the inherited one."""
        recorder = self
        template: Callable[..., Any] = original or getattr(cls, "__init__")  # noqa: B009
        signature = _signature(template)

        def call(instance: Any, *args: Any, **kwargs: Any) -> None:
            if original is not None:
                original(instance, *args, **kwargs)
            else:
                parent: Any = super(cls, instance)
                parent.__init__(*args, **kwargs)

        @functools.wraps(template)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            key = id(self)
            if key in recorder._constructing or not _outermost(self, "__init__", __init__):
                call(self, *args, **kwargs)
                return
            record = recorder._snapshot(type(self).__name__, signature, args, kwargs)
            recorder._constructing.add(key)
            try:
                call(self, *args, **kwargs)
            finally:
                recorder._constructing.discard(key)
            recorder._inits.set(self, record)

        if original is None:
            __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        return __init__

    def _snapshot(
        self,
        class_name: str,
        signature: inspect.Signature | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> InitArgs:
        """Copies taken before ``__init__`` runs, in case it mutates its arguments."""
        args_ok, args_copy = _json_copy(list(args))
        kwargs_ok, kwargs_copy = _json_copy(kwargs)
        if args_ok and kwargs_ok:
            return InitArgs(class_name, args_copy, kwargs_copy)
        bad = _describe(signature, args, kwargs)
        label, value = bad if bad is not None else ("?", None)
        return InitArgs(
            class_name,
            [_copied(a) for a in args],
            {k: _copied(v) for k, v in kwargs.items()},
            bad_argument=label,
            bad_type=type(value).__name__,
        )

    def _predict_wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        recorder = self

        @functools.wraps(original)
        def predict_single(self: Any, *args: Any, **kwargs: Any) -> Any:
            key = id(self)
            outermost = _outermost(self, "predict_single", predict_single)
            if key in recorder._predicting or not outermost:
                return original(self, *args, **kwargs)
            given = [*args, *kwargs.values()]
            sample: Any = _MISSING
            if len(given) == 1:
                if isinstance(given[0], str | bytes):
                    sample = given[0]
                else:
                    ok, copy = _json_copy(given[0])
                    sample = copy if ok else _MISSING
            recorder._predicting.add(key)
            try:
                result = original(self, *args, **kwargs)
            finally:
                recorder._predicting.discard(key)
            if sample is not _MISSING:
                recorder._inputs.set(self, sample)
            return result

        return predict_single

    def init_args(self, instance: object) -> InitArgs | None:
        """How ``instance`` was constructed, or None if it was built before recording began."""
        return self._inits.find(instance)[1]

    def last_input(self, instance: object) -> tuple[bool, Any]:
        """``(True, input)`` for the last str, bytes or JSON input of a successful call."""
        return self._inputs.find(instance)
