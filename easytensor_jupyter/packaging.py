"""Turn a live ``nn.Module`` and its class source into a checked bundle directory, then publish it.

This is the path every front door shares (the seed API, the cell magic, the CLI): build the
bundle, check it statically and in a fresh process, and only then upload.
"""

from __future__ import annotations

import inspect
import json
import platform
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file, save_model

from easytensor_jupyter.bundle import (
    CONSTANTS_FILE,
    MANIFEST_NAME,
    MODEL_FILE,
    WEIGHTS_FILE,
    Batching,
    Manifest,
    Sample,
    file_entry,
)
from easytensor_jupyter.client import Client, UploadResult
from easytensor_jupyter.inference.runtime.loader import NotJSONableError, to_jsonable
from easytensor_jupyter.instances import encode_instance, input_kind
from easytensor_jupyter.validate import (
    ModelCheckError,
    check_source,
    explain_report,
    rebuild_in_fresh_process,
)

__all__ = [
    "NO_SAMPLE",
    "InitArgs",
    "PublishRequest",
    "build_bundle",
    "publish",
    "resolve_init_args",
]

NO_SAMPLE: Any = object()


@dataclass(frozen=True)
class InitArgs:
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PublishRequest:
    name: str
    model: torch.nn.Module
    source: str
    filename: str = MODEL_FILE
    init: InitArgs | None = None
    sample: Any = NO_SAMPLE
    requirements: list[str] = field(default_factory=list)
    constants: Mapping[str, torch.Tensor] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    batching: Batching | None = None
    device: str = "cpu"
    created_by: str = "easytensor"


def _json_roundtrips(value: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(value)) == value)
    except (TypeError, ValueError):
        return False


def resolve_init_args(model: torch.nn.Module, explicit: InitArgs | None) -> InitArgs:
    """The constructor arguments to rebuild ``model``: explicit ones, else the ones it can find.

    Required parameters are looked up as same-named attributes of the instance (the usual
    ``self.hidden = hidden``); if one is not there the error says how to pass it.
    """
    if explicit is not None:
        for label, value in (("init args", explicit.args), ("init kwargs", explicit.kwargs)):
            if not _json_roundtrips(value):
                raise ModelCheckError(
                    f"The {label} {value!r} are not JSON values; pass numbers, strings, lists or dicts."
                )
        return explicit
    cls = type(model)
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return InitArgs()
    kwargs: dict[str, Any] = {}
    for name, param in list(signature.parameters.items())[1:]:
        if (
            param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
            or param.default is not param.empty
        ):
            continue
        found = getattr(model, name, None)
        if found is None or not _json_roundtrips(found):
            raise ModelCheckError(
                f"{cls.__name__}.__init__ needs the argument {name!r}, and EasyTensor cannot tell what it was. "
                f"Pass it: init_kwargs={{{name!r}: ...}} (or --init '{{\"{name}\": ...}}' in the cell magic)."
            )
        kwargs[name] = found
    return InitArgs(kwargs=kwargs)


def _live_answer(model: torch.nn.Module, sample: Any) -> Any:
    """The live model's answer in eval mode, as the server will run it; the mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            answer = model.predict_single(sample)  # type: ignore[operator]
    except Exception as exc:
        raise ModelCheckError(
            f"Your live model failed on the sample: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    try:
        return to_jsonable(answer)
    except NotJSONableError as exc:
        raise ModelCheckError(f"predict_single(sample) on your live model: {exc}") from None


def build_bundle(request: PublishRequest, directory: Path) -> Manifest:
    """Write model.py, weights, constants and manifest.json into ``directory`` after static checks."""
    class_name = type(request.model).__name__
    check_source(request.source, request.filename, class_name)
    init = resolve_init_args(request.model, request.init)
    (directory / MODEL_FILE).write_text(request.source, encoding="utf-8")
    try:
        save_model(request.model, str(directory / WEIGHTS_FILE), force_contiguous=True)
    except Exception as exc:
        raise ModelCheckError(f"Saving the weights with safetensors failed: {exc}") from exc
    files = {
        MODEL_FILE: file_entry(directory / MODEL_FILE),
        WEIGHTS_FILE: file_entry(directory / WEIGHTS_FILE),
    }
    if request.constants:
        tensors = {k: v.detach().cpu().contiguous() for k, v in request.constants.items()}
        save_file(tensors, str(directory / CONSTANTS_FILE))
        files[CONSTANTS_FILE] = file_entry(directory / CONSTANTS_FILE)
    sample: Sample | None = None
    kind = "unknown"
    if request.sample is not NO_SAMPLE:
        encoded = encode_instance(request.sample)
        if not _json_roundtrips(encoded):
            raise ModelCheckError(
                f"The sample is a {type(request.sample).__name__}, which cannot travel as a query: use text, bytes, "
                "numbers, lists or dicts."
            )
        sample = Sample(input=encoded, output=_live_answer(request.model, request.sample))
        kind = input_kind(request.sample)
    manifest = Manifest(
        name=request.name,
        class_name=class_name,
        init_args=init.args,
        init_kwargs=init.kwargs,
        files=files,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        requirements=list(request.requirements),
        sample=sample,
        input_kind=kind,  # type: ignore[arg-type]
        batching=request.batching,
        provenance=dict(request.provenance),
        created_by=request.created_by,
    )
    (directory / MANIFEST_NAME).write_bytes(manifest.to_json_bytes())
    return manifest


def publish(
    request: PublishRequest,
    client: Client,
    *,
    create_token: bool = True,
    force: bool = False,
    progress: Callable[[int, str], Any] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> UploadResult:
    """Build, check in a fresh process, and upload; nothing is sent if a check fails."""
    step = on_step or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="easytensor-bundle-") as tmp:
        directory = Path(tmp)
        step("Packaging model.py and weights")
        manifest = build_bundle(request, directory)
        step("Rebuilding the model in a fresh Python process")
        report = rebuild_in_fresh_process(directory, device=request.device)
        explain_report(report, manifest)
        step(f"Uploading to {client.url}")
        return client.upload_bundle(
            directory, create_token=create_token, force=force, progress=progress
        )
