"""``easytensor deploy model.py --weights FILE --name NAME``: publish without a notebook
(``easytensor deploy notebook.ipynb`` runs a saved notebook instead: ``deploy_notebook``).

The model is built here from the file and weights (this is the user's own code on their own
machine), then goes through the same checks and upload as the notebook path.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from easytensor_jupyter.cli._common import add_connection_options, connect, emit, handles_errors
from easytensor_jupyter.cli.deploy_notebook import add_notebook_options, deploy_notebook

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "deploy", help="publish model.py with its weights, or what a notebook's cells publish"
    )
    parser.add_argument(
        "model_file",
        type=Path,
        help="the file defining the model class with predict_single, or a notebook (.ipynb)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        help=".safetensors, or a state_dict saved with torch.save (needed for model.py)",
    )
    parser.add_argument(
        "--name", help="model name (a new version if it exists; needed for model.py)"
    )
    parser.add_argument(
        "--class", dest="class_name", help="the model class (default: the one with predict_single)"
    )
    parser.add_argument("--init", help="constructor keyword arguments as a JSON object")
    parser.add_argument("--sample", help="a JSON sample input for the parity check")
    parser.add_argument("--sample-text", help="a text sample input for the parity check")
    parser.add_argument("--requirements", nargs="*", default=[], help="pip requirements to record")
    parser.add_argument(
        "--force", action="store_true", help="make a new version even if nothing changed"
    )
    parser.add_argument("--no-token", action="store_true", help="don't create a query token")
    add_notebook_options(parser)
    add_connection_options(parser)
    parser.set_defaults(func=_deploy, deploy_parser=parser)


def _model_class_name(path: Path, source: str) -> str:
    tree = ast.parse(source, filename=str(path))
    candidates = [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(item, ast.FunctionDef) and item.name == "predict_single"
            for item in node.body
        )
    ]
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise ValueError(
            f"{path}: expected one class with predict_single, found {found}; pass --class NAME"
        )
    return candidates[0]


def _load_state(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict")
    return state


@handles_errors
def _deploy(args: argparse.Namespace) -> int:
    from easytensor_jupyter.inference.runtime.loader import LoadError, import_model_module
    from easytensor_jupyter.packaging import NO_SAMPLE, InitArgs, PublishRequest, publish
    from easytensor_jupyter.progress import byte_progress
    from easytensor_jupyter.token_keeper import TokenKeeper, cli_label
    from easytensor_jupyter.validate import ModelCheckError, check_source

    if args.model_file.suffix == ".ipynb":
        return deploy_notebook(args)
    missing = [flag for flag in ("weights", "name") if getattr(args, flag) is None]
    if missing:
        args.deploy_parser.error(
            f"deploying {args.model_file} needs {' and '.join('--' + m for m in missing)}"
        )
    source = args.model_file.read_text(encoding="utf-8")
    try:
        class_name = args.class_name or _model_class_name(args.model_file, source)
        init_kwargs = json.loads(args.init) if args.init else {}
        sample: Any = json.loads(args.sample) if args.sample else NO_SAMPLE
    except (ValueError, SyntaxError) as exc:
        raise ModelCheckError(str(exc)) from None
    if args.sample_text is not None:
        sample = args.sample_text
    check_source(source, str(args.model_file), class_name)
    try:
        module = import_model_module(args.model_file, "easytensor_deploy_model")
    except LoadError as exc:
        raise ModelCheckError(f"{args.model_file}: {exc}\n{exc.detail or ''}") from None
    model = getattr(module, class_name)(**init_kwargs)
    missing, unexpected = model.load_state_dict(_load_state(args.weights), strict=False)
    if missing or unexpected:
        raise ModelCheckError(
            f"{args.weights} does not fit {class_name}(**{init_kwargs}): missing {missing}, unexpected {unexpected}"
        )
    request = PublishRequest(
        name=args.name,
        model=model,
        source=source,
        filename=str(args.model_file),
        init=InitArgs(kwargs=init_kwargs),
        sample=sample,
        requirements=args.requirements,
        provenance={
            "source_file": str(args.model_file.resolve()),
            "weights_file": str(args.weights.resolve()),
        },
        created_by="easytensor deploy",
    )
    client = connect(args)
    result = publish(
        request,
        client,
        create_token=False,
        force=args.force,
        progress=None if args.json else byte_progress,
        on_step=None if args.json else (lambda msg: print(msg, file=sys.stderr)),
    )
    token, reused = None, False
    if not args.no_token:
        kept, reused = TokenKeeper().obtain(
            client,
            result.id,
            origin="cli:deploy",
            label=cli_label("easytensor deploy"),
            server=client.url,
            model_name=result.name,
        )
        token = kept.token
    payload = {
        "id": result.id,
        "name": result.name,
        "version": result.version,
        "query_token": token,
        "query_token_reused": reused,
        "unchanged": result.unchanged,
        "endpoint": client.endpoint(result.id),
    }
    state = "unchanged, still" if result.unchanged else "published as"
    text = f"{result.name} {state} version {result.version}\nendpoint: {payload['endpoint']}"
    if token:
        how = "the one kept from an earlier deploy" if reused else "new"
        text += (
            f"\nquery token ({how}; `easytensor tokens show {result.id}` prints it again): {token}"
        )
    emit(args, payload, text)
    return 0
