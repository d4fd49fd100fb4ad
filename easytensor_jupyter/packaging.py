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
    MODULES_FILE,
    WEIGHTS_FILE,
    Batching,
    Manifest,
    Sample,
    file_entry,
)
from easytensor_jupyter.capture._local import write_modules_zip
from easytensor_jupyter.client import Client, UploadResult
from easytensor_jupyter.fingerprint import fingerprint, weight_parts
from easytensor_jupyter.inference.runtime.loader import NotJSONableError, to_jsonable
from easytensor_jupyter.instance_state import InstanceStateError, capture_instance
from easytensor_jupyter.instances import encode_instance, input_kind
from easytensor_jupyter.requirements import describe, detect_requirements, merge_requirements
from easytensor_jupyter.state import STATE_JSON, StateWriter, class_ref_policy
from easytensor_jupyter.stream_parity import live_stream_answer, streams
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
    "write_data_files",
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
    state: StateWriter | None = None
    """Values the bundle carries as data; the magic fills it while capturing."""
    instance_captured: bool = False
    """Whether ``state`` already holds the instance's arguments and attributes."""
    local_modules: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What the deploy output should tell the user: shipped files, carried state, warnings."""


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
        if not hasattr(model, name):
            raise ModelCheckError(
                f"{cls.__name__}.__init__ needs the argument {name!r}, and EasyTensor cannot tell "
                f"what it was. Keep it on the model (self.{name} = {name}), or pass it: "
                f"init_kwargs={{{name!r}: ...}} (or --init '{{\"{name}\": ...}}' in the cell "
                "magic) when it is a JSON value."
            )
        kwargs[name] = getattr(model, name)
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


def _train_mode_note(model: torch.nn.Module, sample: Any, eval_answer: Any) -> str | None:
    """A model left in train() mode answers differently in the notebook than on the server."""
    if not model.training:
        return None
    if sample is NO_SAMPLE:
        return (
            "Warning: the model is in train() mode (dropout and batch norm act as in training); "
            "the endpoint runs it in eval() mode. Call model.eval() before deploying."
        )
    with torch.inference_mode():
        try:
            train_answer = to_jsonable(model.predict_single(sample))  # type: ignore[operator]
        except Exception:
            train_answer = "(an error)"
    if train_answer == eval_answer:
        return None
    return (
        "Warning: the model is in train() mode, and answers differently there. The endpoint runs "
        f"it in eval() mode. Sample in train mode: {train_answer!r}; in eval mode (served): "
        f"{eval_answer!r}. Call model.eval() before deploying to see what the endpoint answers."
    )


def _is_json(value: Any) -> bool:
    return value is None or (_json_roundtrips(value) and _plain_json(value))


def _plain_json(value: Any) -> bool:
    if type(value) in (bool, int, float, str) or value is None:
        return True
    if type(value) in (list, tuple):
        return all(_plain_json(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain_json(v) for k, v in value.items())
    return False


def _instance_state(request: PublishRequest, init: InitArgs) -> StateWriter:
    state = (
        request.state
        if request.state is not None
        else StateWriter(class_ref_policy(lambda _: False))
    )
    if not request.instance_captured:
        try:
            report = capture_instance(request.model, init.args, init.kwargs, state)
        except InstanceStateError as exc:
            raise ModelCheckError(str(exc)) from None
        request.notes.extend(report.notes())
    return state


def _requirements(request: PublishRequest, directory: Path, names: list[str]) -> list[str]:
    """Pins for what model.py and the shipped files import, plus ``--requirements``."""
    state_json = directory / STATE_JSON
    kinds = (
        ["hf_tokenizer"]
        if state_json.is_file() and '"hf_tokenizer"' in state_json.read_text()
        else []
    )
    detected = detect_requirements(request.source, request.local_modules, names, kinds)
    try:
        requirements = merge_requirements(detected, request.requirements)
    except ValueError as exc:
        raise ModelCheckError(str(exc)) from None
    request.notes.append(describe(requirements))
    return requirements


def write_data_files(request: PublishRequest, directory: Path, state: StateWriter) -> list[str]:
    """Write every bundle file but the weights; the names written, model.py first."""
    (directory / MODEL_FILE).write_text(request.source, encoding="utf-8")
    names = [MODEL_FILE]
    if request.constants:
        tensors = {k: v.detach().cpu().contiguous() for k, v in request.constants.items()}
        save_file(tensors, str(directory / CONSTANTS_FILE))
        names.append(CONSTANTS_FILE)
    if state:
        names += state.write(directory)
    if request.local_modules:
        try:
            shipped = write_modules_zip(request.local_modules, directory / MODULES_FILE)
        except ValueError as exc:
            raise ModelCheckError(str(exc)) from None
        names.append(MODULES_FILE)
        request.notes.append(f"Shipped local files: {', '.join(shipped)}")
    return names


def build_bundle(request: PublishRequest, directory: Path) -> Manifest:
    """Write model.py, weights, constants, state, shipped modules and manifest.json into
    ``directory`` after static checks."""
    class_name = type(request.model).__name__
    check_source(request.source, request.filename, class_name)
    init = resolve_init_args(request.model, request.init)
    state = _instance_state(request, init)
    json_init = _is_json(init.args) and _is_json(init.kwargs)
    try:
        save_model(request.model, str(directory / WEIGHTS_FILE), force_contiguous=True)
    except Exception as exc:
        raise ModelCheckError(f"Saving the weights with safetensors failed: {exc}") from exc
    names = [WEIGHTS_FILE, *write_data_files(request, directory, state)]
    files = {name: file_entry(directory / name) for name in names}
    requirements = _requirements(request, directory, names)
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
        if streams(request.model):
            sample.stream_output = live_stream_answer(request.model, request.sample)
        kind = input_kind(request.sample)
    note = _train_mode_note(request.model, request.sample, sample.output if sample else None)
    if note:
        request.notes.append(note)
    manifest = Manifest(
        name=request.name,
        class_name=class_name,
        init_args=list(init.args) if json_init else [],
        init_kwargs=dict(init.kwargs) if json_init else {},
        files=files,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        requirements=requirements,
        sample=sample,
        input_kind=kind,  # type: ignore[arg-type]
        batching=request.batching,
        streaming=streams(request.model),
        provenance=dict(request.provenance),
        created_by=request.created_by,
    )
    manifest.fingerprint = fingerprint(
        source=request.source,
        class_name=class_name,
        weights=weight_parts(request.model),
        files={name: entry.sha256 for name, entry in files.items()},
        init={"args": manifest.init_args, "kwargs": manifest.init_kwargs},
        requirements=requirements,
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
    candidate: bool = False,
) -> UploadResult:
    """Build, check in a fresh process, and upload; nothing is sent if a check fails."""
    step = on_step or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="easytensor-bundle-") as tmp:
        directory = Path(tmp)
        step("Packaging model.py and weights")
        manifest = build_bundle(request, directory)
        for note in request.notes:
            step(note)
        step("Rebuilding the model in a fresh Python process")
        report = rebuild_in_fresh_process(directory, device=request.device)
        explain_report(report, manifest)
        _announce_environment(client, manifest, step)
        step(f"Uploading to {client.url}")
        result = client.upload_bundle(
            directory,
            create_token=create_token,
            force=force,
            progress=progress,
            candidate=candidate,
        )
    for warning in result.warnings:
        step(f"Warning: {warning}")
    if result.environment:
        how = "reused" if result.environment.get("reused") else "built"
        step(
            f"The server {how} an environment for it: {', '.join(result.environment['requirements'])}"
        )
    return result


def _announce_environment(client: Client, manifest: Manifest, step: Callable[[str], None]) -> None:
    """Say before a long upload that the server will build an environment, and for what."""
    if not manifest.requirements:
        return
    try:
        plan = client.request(
            "POST", "/v1/environments/check", json={"requirements": manifest.requirements}
        ).json()
    except Exception:
        return  # an older server: the upload answers for itself
    if plan.get("build"):
        step(f"Building environment: {', '.join(manifest.requirements)} (on the server)")
