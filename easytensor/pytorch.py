"""``easytensor.pytorch.upload_model``: the seed's way to publish a model."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from easytensor._session import client
from easytensor_jupyter.packaging import NO_SAMPLE, InitArgs, PublishRequest, publish
from easytensor_jupyter.progress import byte_progress
from easytensor_jupyter.validate import ModelCheckError

__all__ = ["upload_model"]


def upload_model(
    name: str,
    model: torch.nn.Module,
    model_file: str | Path,
    create_token: bool = True,
    *,
    sample: Any = NO_SAMPLE,
    requirements: Sequence[str] | None = None,
    init_args: Sequence[Any] | None = None,
    init_kwargs: Mapping[str, Any] | None = None,
    force: bool = False,
    quiet: bool = False,
) -> tuple[str, str | None]:
    """Check and upload ``model`` with the class in ``model_file``; return ``(model_id, token)``.

    The file is rebuilt in a fresh process first; with ``sample`` its answer must match the live
    model's. Nothing is uploaded when a check fails.
    """
    if not isinstance(model, torch.nn.Module):
        raise ModelCheckError(
            f"model must be a torch.nn.Module instance, not {type(model).__name__}"
        )
    path = Path(model_file)
    if not path.is_file():
        raise ModelCheckError(
            f"{path}: no such file. Save the model class with predict_single there."
        )
    init = None
    if init_args is not None or init_kwargs is not None:
        init = InitArgs(list(init_args or []), dict(init_kwargs or {}))
    request = PublishRequest(
        name=name,
        model=model,
        source=path.read_text(encoding="utf-8"),
        filename=str(path),
        init=init,
        sample=sample,
        requirements=list(requirements or []),
        provenance={"source_file": str(path.resolve())},
        created_by="easytensor.pytorch.upload_model",
    )
    step = None if quiet else (lambda msg: print(msg, file=sys.stderr))
    result = publish(
        request,
        client(),
        create_token=create_token,
        force=force,
        progress=None if quiet else byte_progress,
        on_step=step,
    )
    return result.id, result.query_token
