"""Turn a bundle directory into a callable model: import, build, load weights, predict.

This runs model code, so it is only ever imported inside a worker process or a fresh validation
process, never in the server. It knows nothing of HTTP or of the process pool, so a scale-out
backend can run the same code in its own replicas.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors import safe_open

from easytensor_jupyter.bundle import MODEL_FILE, WEIGHTS_FILE, Manifest
from easytensor_jupyter.inference.runtime.restore import (
    add_shipped_modules,
    apply_saved_dtypes,
    apply_state,
)
from easytensor_jupyter.inference.runtime.weights import load_weights
from easytensor_jupyter.state import StateLoadError, reader_for

__all__ = [
    "LoadError",
    "LoadedModel",
    "NotJSONableError",
    "Outcome",
    "check_state_keys",
    "import_model_module",
    "load_bundle_dir",
    "to_jsonable",
    "traceback_tail",
]

TRACEBACK_TAIL_LINES = 12


class LoadError(RuntimeError):
    """The bundle's code or weights could not be turned into a model; ``stage`` says where."""

    def __init__(self, stage: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "message": str(self), "detail": self.detail}


class NotJSONableError(TypeError):
    pass


@dataclass(frozen=True)
class Outcome:
    """One instance's result: ``value`` when ``ok``, else an error dict with code and message."""

    ok: bool
    value: Any

    def to_wire(self) -> list[Any]:
        return [self.ok, self.value]


def to_jsonable(value: Any, path: str = "output") -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            return to_jsonable(value.tolist(), path)
        if isinstance(value, numpy.generic):
            return to_jsonable(value.item(), path)
    raise NotJSONableError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which is not JSON: "
        "return str, numbers, lists, dicts, tensors or NumPy values from predict_single"
    )


def _traceback_tail(exc: BaseException) -> str:
    """The last lines of the model's own traceback, without this module's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-TRACEBACK_TAIL_LINES:])


traceback_tail = _traceback_tail


def import_model_module(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LoadError("import", f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        raise LoadError(
            "import",
            f"model.py failed to import: {type(exc).__name__}: {exc}",
            _traceback_tail(exc),
        ) from None
    return module


def check_state_keys(model: torch.nn.Module, weights: Path) -> None:
    """Compare the weights file with what the model expects, so a mismatch reads as a list of keys."""
    expected = model.state_dict()
    with safe_open(str(weights), framework="pt") as fh:
        saved = {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}  # noqa: SIM118
    storage_of = {k: v.untyped_storage().data_ptr() for k, v in expected.items() if v.numel()}
    saved_storages = {storage_of[k] for k in saved if k in storage_of}
    missing = [
        k
        for k in expected
        if k not in saved and not (k in storage_of and storage_of[k] in saved_storages)
    ]
    unexpected = [k for k in saved if k not in expected]
    misshaped = [
        f"{k}: weights {list(saved[k])} vs model {list(expected[k].shape)}"
        for k in saved
        if k in expected and tuple(expected[k].shape) != saved[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {'; '.join(misshaped)}")
    if problems:
        raise LoadError(
            "weights",
            "the weights do not fit the model built from model.py and the constructor arguments: "
            + " | ".join(problems),
        )


class LoadedModel:
    """A built, weight-loaded model in eval mode, ready for ``predict``."""

    def __init__(self, model: torch.nn.Module, manifest: Manifest, device: str) -> None:
        self.model = model
        self.manifest = manifest
        self.device = device
        predict_batch = getattr(model, "predict_batch", None)
        self.batch_fn = predict_batch if callable(predict_batch) else None

    def predict(self, instances: Sequence[Any]) -> list[Outcome]:
        with torch.inference_mode():
            if self.batch_fn is not None and len(instances) > 1:
                batched = self._predict_batch(instances)
                if batched is not None:
                    return batched
            return [self._predict_one(x) for x in instances]

    def _predict_one(self, instance: Any) -> Outcome:
        try:
            result = self.model.predict_single(instance)  # type: ignore[operator]
        except Exception as exc:
            return Outcome(False, _model_error(exc))
        return _jsonable_outcome(result)

    def _predict_batch(self, instances: Sequence[Any]) -> list[Outcome] | None:
        """Run ``predict_batch``; on its failure fall back to single calls so errors land per instance."""
        assert self.batch_fn is not None
        try:
            results = self.batch_fn(list(instances))
        except Exception:
            return None
        if not isinstance(results, list | tuple) or len(results) != len(instances):
            return None
        return [_jsonable_outcome(r) for r in results]


def _model_error(exc: BaseException) -> dict[str, Any]:
    return {
        "code": "model_error",
        "message": f"predict_single raised {type(exc).__name__}: {exc}",
        "detail": {"exception": type(exc).__name__, "traceback": _traceback_tail(exc)},
    }


def _jsonable_outcome(result: Any) -> Outcome:
    try:
        return Outcome(True, to_jsonable(result))
    except NotJSONableError as exc:
        return Outcome(False, {"code": "output_not_json", "message": str(exc), "detail": None})


def load_bundle_dir(directory: Path, manifest: Manifest, device: str = "cpu") -> LoadedModel:
    """Import model.py, build the class from the manifest's arguments and load the weights."""
    module_name = f"easytensor_model_{manifest.files[MODEL_FILE].sha256[:16]}"
    add_shipped_modules(directory)
    module = import_model_module(directory / MODEL_FILE, module_name)
    cls = getattr(module, manifest.class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise LoadError(
            "class", f"model.py defines no nn.Module class named {manifest.class_name!r}"
        )
    predict_single = getattr(cls, "predict_single", None)
    if not callable(predict_single):
        raise LoadError("class", f"{manifest.class_name} has no predict_single method")
    state = reader_for(directory)
    namespace = vars(module)
    args, kwargs = list(manifest.init_args), dict(manifest.init_kwargs)
    try:
        from_state = state.init(namespace)
    except StateLoadError as exc:
        raise LoadError("state", f"the model's saved state can't be read: {exc}") from None
    if from_state is not None:
        args, kwargs = from_state
    try:
        model = cls(*args, **kwargs)
    except Exception as exc:
        call = _call_text(manifest)
        raise LoadError(
            "build", f"{call} failed: {type(exc).__name__}: {exc}", _traceback_tail(exc)
        ) from None
    weights = directory / WEIGHTS_FILE
    check_state_keys(model, weights)
    try:
        apply_saved_dtypes(model, weights)
        model.to(device)
        load_weights(model, weights, device)
    except Exception as exc:
        raise LoadError("weights", f"loading weights failed: {exc}", _traceback_tail(exc)) from None
    try:
        apply_state(model, state, namespace)
    except StateLoadError as exc:
        raise LoadError("state", f"the model's saved state can't be read: {exc}") from None
    except Exception as exc:
        raise LoadError(
            "state",
            f"setting the model's saved attributes failed: {type(exc).__name__}: {exc}",
            _traceback_tail(exc),
        ) from None
    model.eval()
    return LoadedModel(model, manifest, device)


def _call_text(manifest: Manifest) -> str:
    parts = [repr(a) for a in manifest.init_args]
    parts += [f"{k}={v!r}" for k, v in manifest.init_kwargs.items()]
    return f"{manifest.class_name}({', '.join(parts)})"
