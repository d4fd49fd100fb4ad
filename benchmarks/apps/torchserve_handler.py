"""TorchServe handler for a bundle: the .mar carries model.py, weights and manifest.json, and
this handler loads them with the product's own runtime, so TorchServe serves the same weights."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import torch

__all__ = ["handle"]

_MODEL: Any = None


def _native(value: Any) -> Any:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return value


def _instance(row: dict[str, Any]) -> Any:
    body = row.get("body") if row.get("body") is not None else row.get("data")
    if isinstance(body, bytes | bytearray):
        body = orjson.loads(body)
    return _native(body["instances"][0])


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """One call per TorchServe batch; answers one ``{"predictions": [...]}`` per request."""
    global _MODEL
    if _MODEL is None:
        from easytensor_jupyter.bundle import read_manifest_dir
        from easytensor_jupyter.inference.runtime.loader import load_bundle_dir

        torch.set_num_threads(1)
        directory = Path(context.system_properties["model_dir"])
        _MODEL = load_bundle_dir(directory, read_manifest_dir(directory)).model
    if data is None:
        return None
    inputs = [_instance(row) for row in data]
    with torch.inference_mode():
        if len(inputs) > 1 and hasattr(_MODEL, "predict_batch"):
            outputs = _MODEL.predict_batch(inputs)
        else:
            outputs = [_MODEL.predict_single(x) for x in inputs]
    return [orjson.dumps({"predictions": [o]}).decode() for o in outputs]
