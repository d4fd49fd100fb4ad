"""``easytensor models [list|show|delete|default|scale]``."""

from __future__ import annotations

import argparse
from typing import Any

from easytensor_jupyter.cli._common import add_connection_options, connect, emit, handles_errors

__all__ = ["add_parser", "describe_scaling"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "models", help="list, show, delete and scale models, and choose default versions"
    )
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
    scale = actions.add_parser(
        "scale",
        help="serve with a fixed number of replicas, or autoscale (Ray backend)",
        description="Use --replicas N for a fixed count, or --max N [--min N] [--target X] "
        "to autoscale between min and max replicas (Ray backend only).",
    )
    scale.add_argument("model", help="model id or name")
    form = scale.add_mutually_exclusive_group(required=True)
    form.add_argument("--replicas", type=int, metavar="N", help="exactly N replicas (1 to 64)")
    form.add_argument(
        "--max", dest="max_replicas", type=int, metavar="N", help="autoscale up to N replicas"
    )
    scale.add_argument(
        "--min",
        dest="min_replicas",
        type=int,
        metavar="N",
        help="autoscale down to N replicas, 0 to scale to zero (server default 1)",
    )
    scale.add_argument(
        "--target",
        dest="target_ongoing_requests",
        type=float,
        metavar="X",
        help="requests in flight per replica that autoscaling aims for (server default 2)",
    )
    add_connection_options(scale)
    scale.set_defaults(func=_scale, scale_parser=scale)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _replicas(n: int) -> str:
    return f"{n} replica{'' if n == 1 else 's'}"


def describe_scaling(model: dict[str, Any]) -> str:
    """Shared by ``show`` and ``scale``; parts an older server does not send are left out."""
    parts: list[str] = []
    scaling = model.get("scaling") or {}
    auto = scaling.get("autoscaling")
    if auto:
        text = f"autoscaling {auto.get('min_replicas', 1)} to {auto.get('max_replicas')} replicas"
        target = auto.get("target_ongoing_requests")
        parts.append(text + (f", target {target:g} in flight" if target is not None else ""))
    elif scaling.get("replicas") is not None:
        parts.append(f"{_replicas(scaling['replicas'])} (fixed)")
    if model.get("replicas_running") is not None:
        parts.append(f"{model['replicas_running']} running")
    if model.get("backend"):
        parts.append(f"backend {model['backend']}")
    return ", ".join(parts)


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
    scaling = describe_scaling(model)
    if scaling:
        lines.append(f"scaling: {scaling}")
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


@handles_errors
def _scale(args: argparse.Namespace) -> int:
    if args.replicas is not None and (
        args.min_replicas is not None or args.target_ongoing_requests is not None
    ):
        args.scale_parser.error("--min and --target go with --max (autoscaling), not --replicas")
    client = connect(args)
    model = client.set_scaling(
        client.find_model(args.model)["id"],
        replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests,
    )
    emit(args, model, f"{model['id']}: {describe_scaling(model)}")
    return 0
