"""What a live model carries beyond its weights: constructor objects and attributes set later.

Training often leaves state on the model that ``__init__`` never made: ``model.classes_``, a
threshold tuned on validation data, a vocabulary built while reading the data. A fresh instance
built from the same constructor arguments shows which attributes (of the model and of every
submodule) differ; those travel as data and are set again after the model is built on the
server. Parameters and buffers travel in the weights, as before.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from easytensor_jupyter.state import StateWriter, Unencodable

__all__ = ["InstanceReport", "capture_instance", "same_value"]

_MODULE_INTERNALS = frozenset(torch.nn.Module().__dict__) | {"training"}
# RNN, GRU and LSTM rebuild these views of their parameters themselves (_init_flat_weights).
_DERIVED = {torch.nn.RNNBase: frozenset({"_flat_weights", "_flat_weight_refs"})}


@dataclass
class InstanceReport:
    """What was carried, for the deploy output."""

    attributes: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    init_as_state: bool = False
    warnings: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        carried = [f"Carried state: {', '.join(self.attributes)}"] if self.attributes else []
        return [*(f"Warning: {w}" for w in self.warnings), *carried]


class InstanceStateError(ValueError):
    """An attribute or argument that differs from a fresh instance and can't travel as data."""


def _json_like(value: Any) -> bool:
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) in (list, tuple):
        return all(_json_like(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _json_like(v) for k, v in value.items())
    return False


@contextlib.contextmanager
def _kept_random_state() -> Iterator[None]:
    """Building the fresh instance must not move the notebook's random number generators."""
    state = random.getstate()
    numpy = sys.modules.get("numpy")
    numpy_state = numpy.random.get_state() if numpy is not None else None
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(state)
            if numpy is not None:
                numpy.random.set_state(numpy_state)


def same_value(a: Any, b: Any, depth: int = 0) -> bool:
    """Equal in value and type, also for tensors, arrays and objects of notebook classes."""
    if a is b:
        return True
    if type(a) is not type(b) or depth > 50:
        return False
    if isinstance(a, torch.Tensor):
        if a.is_meta or b.is_meta or a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(torch.equal(a.cpu(), b.cpu()))
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(a, numpy.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(numpy.array_equal(a, b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(
            same_value(x, y, depth + 1) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_value(a[k], b[k], depth + 1) for k in a)
    own_eq = any("__eq__" in vars(c) for c in type(a).__mro__[:-1])
    if hasattr(a, "__dict__") and not callable(a) and not own_eq:
        return same_value(vars(a), vars(b), depth + 1)
    try:
        return bool(a == b)
    except Exception:
        return False


def _fresh(model: torch.nn.Module, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """A fresh instance, built on the meta device when ``__init__`` allows it, so a large model
    costs no memory twice; tensors made there compare as different and travel."""
    with _kept_random_state(), torch.no_grad():
        try:
            with torch.device("meta"):
                return type(model)(*args, **kwargs)
        except Exception:
            return type(model)(*args, **kwargs)


def _own_state(module: torch.nn.Module) -> dict[str, Any]:
    skip = set(_MODULE_INTERNALS)
    for cls, names in _DERIVED.items():
        if isinstance(module, cls):
            skip |= names
    state = {k: v for k, v in vars(module).items() if k not in skip}
    for name in sorted(getattr(module, "_non_persistent_buffers_set", ())):
        if module._buffers.get(name) is not None:
            state[name] = module._buffers[name]
    return state


def _refusal(label: str, value: Any, error: Unencodable) -> InstanceStateError:
    part = "" if error.path == label else f", holding at {error.path}"
    return InstanceStateError(
        f"{label} differs from a freshly built model and can't travel with it: it is "
        f"{error.reason}{part}. Nothing is pickled. {error.fix}"
    )


def capture_instance(
    model: torch.nn.Module, args: list[Any], kwargs: dict[str, Any], state: StateWriter
) -> InstanceReport:
    """Record in ``state`` the constructor arguments that aren't JSON and every attribute that
    differs from a fresh instance; raise InstanceStateError naming ``model.attr`` otherwise."""
    report = InstanceReport()
    call = f"{type(model).__name__}(...)"
    if not (_json_like(args) and _json_like(kwargs)):
        try:
            state.set_init(args, kwargs, f"the arguments of {call}")
        except Unencodable as error:
            raise InstanceStateError(
                f"An argument of {call} can't travel with the model: at {error.path} it is "
                f"{error.reason}. Nothing is pickled. {error.fix}"
            ) from None
        report.init_as_state = True
    try:
        fresh = _fresh(model, args, kwargs)
    except Exception as exc:
        fresh = None
        report.warnings.append(
            f"Could not build a fresh {call} to compare attributes with ({type(exc).__name__}: "
            f"{exc}); every attribute that can travel as data is carried."
        )
    fresh_modules = dict(fresh.named_modules()) if fresh is not None else {}
    for where, module in model.named_modules():
        label_base = f"model.{where}" if where else "model"
        baseline = fresh_modules.get(where)
        base_state = _own_state(baseline) if baseline is not None else {}
        for attr, value in _own_state(module).items():
            if attr in base_state and same_value(value, base_state[attr]):
                continue
            label = f"{label_base}.{attr}"
            try:
                state.add_attr(where, attr, value, label)
            except Unencodable as error:
                if baseline is None:
                    report.warnings.append(f"{label} was not carried: {error.reason}.")
                    continue
                raise _refusal(label, value, error) from None
            report.attributes.append(label)
    report.frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    if report.frozen:
        state.frozen = list(report.frozen)
    return report
