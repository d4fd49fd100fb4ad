"""``easytensor models [list|show|delete|default|scale|diff|log|traffic]``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from easytensor_jupyter.cli._common import (
    add_connection_options,
    confirm,
    connect,
    emit,
    handles_errors,
)
from easytensor_jupyter.cli.models_diff import add_diff_parser

__all__ = ["add_parser", "describe_replicas", "describe_scaling"]


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
    delete = actions.add_parser(
        "delete", help="delete a model, or one version with --version (asks first)"
    )
    delete.add_argument("model")
    delete.add_argument("--version", type=int)
    delete.add_argument("--yes", "-y", action="store_true", help="delete without asking")
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
        "to autoscale between min and max replicas (Ray backend only). --num-cpus, --num-gpus "
        "and --resources set what each replica needs from a node (Ray backend only); what "
        "you leave out keeps its current value.",
    )
    scale.add_argument("model", help="model id or name")
    form = scale.add_mutually_exclusive_group()
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
    scale.add_argument(
        "--num-cpus", type=float, metavar="N", help="CPUs each replica needs (Ray backend)"
    )
    scale.add_argument(
        "--num-gpus",
        type=float,
        metavar="N",
        help="GPUs each replica needs; above 0 its worker runs on cuda (Ray backend)",
    )
    scale.add_argument(
        "--resources",
        type=_resources,
        metavar="JSON",
        help="custom Ray resources each replica needs, e.g. '{\"accel\": 1}' (Ray backend)",
    )
    add_connection_options(scale)
    scale.set_defaults(func=_scale, scale_parser=scale)
    add_diff_parser(actions)
    from easytensor_jupyter.cli import traffic

    traffic.add_actions(actions)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _replicas(n: int) -> str:
    return f"{n} replica{'' if n == 1 else 's'}"


def _resources(text: str) -> dict[str, float]:
    """``--resources '{"accel": 1}'``: a JSON object of names and amounts."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}); e.g. '{{\"accel\": 1}}'") from None
    numbers = isinstance(value, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    )
    if not numbers:
        raise argparse.ArgumentTypeError("give a JSON object of numbers, e.g. '{\"accel\": 1}'")
    return {str(k): float(v) for k, v in value.items()}


def _needs(scaling: dict[str, Any]) -> str:
    parts = []
    if scaling.get("num_cpus") is not None:
        parts.append(f"{scaling['num_cpus']:g} CPU")
    if scaling.get("num_gpus") is not None:
        parts.append(f"{scaling['num_gpus']:g} GPU")
    for name, amount in sorted((scaling.get("resources") or {}).items()):
        parts.append(f"{name}={amount:g}")
    return f"each needs {' + '.join(parts)}" if parts else ""


def describe_replicas(model: dict[str, Any]) -> list[str]:
    """One line per replica for ``show``: id, state, node, start, requests, device."""
    lines = []
    for r in model.get("replicas") or ():
        node = str(r.get("node") or "?")[:12]
        if r.get("node_ip"):
            node += f" ({r['node_ip']})"
        served = r.get("requests")
        parts = [
            f"  {r.get('id', '?'):<14} {r.get('state', '?'):<8} node {node}",
            f"since {r['started_at']}" if r.get("started_at") else "",
            f"{served} request{'' if served == 1 else 's'}" if served is not None else "",
            str(r.get("device") or ""),
        ]
        lines.append("  ".join(p for p in parts if p))
    return lines


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
    if _needs(scaling):
        parts.append(_needs(scaling))
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
    replicas = describe_replicas(model)
    if replicas:
        lines += ["replicas:", *replicas]
    for v in model["versions"]:
        mark = "*" if v["version"] == model["default_version"] else " "
        lines.append(
            f" {mark} v{v['version']}  {v.get('class_name', '')}  {_size(v.get('size_bytes', 0))}  {v.get('created_at', '')}"
        )
        pins = ", ".join(v.get("requirements") or []) or "none beyond torch"
        lines.append(f"      requirements: {pins}; environment: {v.get('environment', 'server')}")
        lines += [f"      warning: {w}" for w in v.get("warnings") or []]
    emit(args, model, "\n".join(lines))
    return 0


@handles_errors
def _delete(args: argparse.Namespace) -> int:
    client = connect(args)
    model = client.find_model(args.model)
    count = len(model.get("versions", []))
    what = (
        f"Delete {model['name']} ({model['id']}) and its {count} version{'' if count == 1 else 's'}? "
        "Its endpoint stops answering."
        if args.version is None
        else f"Delete version {args.version} of {model['name']} ({model['id']})?"
    )
    if not confirm(what, args, verb="delete"):
        emit(args, {"deleted": None}, "Nothing deleted.")
        return 1
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
    needs = {
        k: v
        for k, v in (
            ("num_cpus", args.num_cpus),
            ("num_gpus", args.num_gpus),
            ("resources", args.resources),
        )
        if v is not None
    }
    if args.replicas is None and args.max_replicas is None and not needs:
        args.scale_parser.error(
            "one of the arguments --replicas --max is required "
            "(or --num-cpus, --num-gpus, --resources to change only what each replica needs)"
        )
    client = connect(args)
    model = client.set_scaling(
        client.find_model(args.model)["id"],
        replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests,
        **needs,
    )
    emit(args, model, f"{model['id']}: {describe_scaling(model)}")
    return 0
