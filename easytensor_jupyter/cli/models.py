"""``easytensor models [list|show|delete|default]``."""

from __future__ import annotations

import argparse
from typing import Any

from easytensor_jupyter.cli._common import add_connection_options, connect, emit, handles_errors

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("models", help="list, show, delete models and choose default versions")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    parser.set_defaults(func=_list, action="list")
    add_connection_options(parser)
    listing = actions.add_parser("list", help="list models")
    add_connection_options(listing)
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", help="show one model and its versions")
    show.add_argument("model", help="model id or name")
    add_connection_options(show)
    show.set_defaults(func=_show)
    delete = actions.add_parser("delete", help="delete a model, or one version with --version")
    delete.add_argument("model")
    delete.add_argument("--version", type=int)
    add_connection_options(delete)
    delete.set_defaults(func=_delete)
    default = actions.add_parser("default", help="choose the default version (rollback)")
    default.add_argument("model")
    default.add_argument("version", type=int)
    add_connection_options(default)
    default.set_defaults(func=_default)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@handles_errors
def _list(args: argparse.Namespace) -> int:
    models = connect(args).list_models()
    if not models:
        emit(
            args,
            {"models": []},
            "No models yet. Publish one with easytensor deploy or %%easytensor_model.",
        )
        return 0
    rows = [f"{'ID':32} {'NAME':28} {'DEFAULT':>7} {'VERSIONS':>8} {'SIZE':>9} STATUS"]
    for m in models:
        rows.append(
            f"{m['id']:32} {m['name'][:28]:28} {m['default_version']:>7} {len(m['versions']):>8} "
            f"{_size(m.get('size_bytes', 0)):>9} {m.get('status', '')}"
        )
    emit(args, {"models": models}, "\n".join(rows))
    return 0


@handles_errors
def _show(args: argparse.Namespace) -> int:
    client = connect(args)
    model = client.find_model(args.model)
    lines = [
        f"{model['name']} ({model['id']})",
        f"endpoint: {model.get('endpoint', client.endpoint(model['id']))}",
    ]
    for v in model["versions"]:
        mark = "*" if v["version"] == model["default_version"] else " "
        lines.append(
            f" {mark} v{v['version']}  {v.get('class_name', '')}  {_size(v.get('size_bytes', 0))}  {v.get('created_at', '')}"
        )
    emit(args, model, "\n".join(lines))
    return 0


@handles_errors
def _delete(args: argparse.Namespace) -> int:
    client = connect(args)
    model = client.find_model(args.model)
    if args.version is None:
        client.delete_model(model["id"])
        emit(args, {"deleted": model["id"]}, f"Deleted {model['name']} ({model['id']}).")
    else:
        client.delete_version(model["id"], args.version)
        emit(
            args,
            {"deleted": model["id"], "version": args.version},
            f"Deleted version {args.version} of {model['name']}.",
        )
    return 0


@handles_errors
def _default(args: argparse.Namespace) -> int:
    client = connect(args)
    model = client.set_default(client.find_model(args.model)["id"], args.version)
    emit(args, model, f"{model['name']} now serves version {model['default_version']} by default.")
    return 0
