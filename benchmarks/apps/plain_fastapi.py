"""Plain FastAPI + uvicorn calling the model in-process: what a notebook user would write.

A pydantic body, a sync route (FastAPI runs it in its thread pool) and the default JSON
response. ``BENCH_BUNDLE`` names the bundle folder.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI
from pydantic import BaseModel

from easytensor_jupyter.bundle import read_manifest_dir
from easytensor_jupyter.inference.runtime.loader import load_bundle_dir

__all__ = ["app"]

torch.set_num_threads(1)
_DIR = Path(os.environ["BENCH_BUNDLE"])
_MODEL = load_bundle_dir(_DIR, read_manifest_dir(_DIR)).model


class PredictIn(BaseModel):
    instances: list[Any]


def _native(value: Any) -> Any:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return value


app = FastAPI()


@app.post("/predict")
def predict(body: PredictIn) -> dict[str, Any]:
    with torch.inference_mode():
        return {"predictions": [_MODEL.predict_single(_native(x)) for x in body.instances]}  # type: ignore[operator]
