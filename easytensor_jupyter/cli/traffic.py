"""``easytensor models log MODEL MODE`` and ``easytensor models traffic MODEL ...``."""

from __future__ import annotations

import argparse
from typing import Any

from easytensor_jupyter.cli._common import add_connection_options, connect, emit, handles_errors

__all__ = ["add_actions", "describe_log", "describe_traffic"]


def add_actions(actions: Any) -> None:
    log = actions.add_parser(
        "log",
        help="set what a model's request log keeps (off, errors, sample:P, all)",
        description="Without MODE, show the setting. MODE is off, errors, sample:P (a "
        "fraction or percentage: sample:0.1, sample:10%%), all, or default (the server's "
        "--request-log).",
    )
    log.add_argument("model", help="model id or name")
    log.add_argument("mode", nargs="?", help="off, errors, sample:P, all or default")
    log.add_argument("--keep", type=int, metavar="N", help="records kept at most")
    log.add_argument("--keep-mb", type=float, metavar="MB", help="MiB kept at most")
    add_connection_options(log)
    log.set_defaults(func=_log)
    traffic = actions.add_parser(
        "traffic",
        help="split traffic between versions, shadow one, promote or roll back",
        description="With no option, show the policy. --split 2=90,3=10 sends 90%% of "
        "requests to v2 and 10%% to v3 (--sticky keeps each X-EasyTensor-Key header value on "
        "one version); --shadow 3 copies live traffic to v3 in the background and compares "
        "its answers. --promote N makes vN the default and clears both; --rollback clears "
        "them, or undoes the last promote. Requests with ?version=N bypass the policy.",
    )
    traffic.add_argument("model", help="model id or name")
    traffic.add_argument("--split", metavar="V=W,...", help="weights per version, e.g. 2=90,3=10")
    traffic.add_argument("--sticky", action="store_true", help="route by X-EasyTensor-Key")
    traffic.add_argument("--shadow", type=int, metavar="N", help="shadow version")
    traffic.add_argument("--promote", type=int, metavar="N", help="make vN the default")
    traffic.add_argument("--rollback", action="store_true", help="undo the split or promote")
    add_connection_options(traffic)
    traffic.set_defaults(func=_traffic, traffic_parser=traffic)


def describe_log(settings: dict[str, Any]) -> str:
    mb = settings["keep_bytes"] / (1 << 20)
    own = "" if settings.get("own_mode") else " (the server's default)"
    return (
        f"{settings['model_id']}: request log {settings['mode']}{own}, keeps "
        f"{settings['keep']:,} records / {mb:g} MiB; holds {settings['records']:,} "
        f"({settings['bytes'] / (1 << 20):.2f} MiB)"
        + ("; inputs redacted" if settings.get("redact") else "")
    )


def describe_traffic(view: dict[str, Any]) -> str:
    lines = [f"{view['model_id']}: default v{view['default_version']}"]
    split = view.get("split")
    if split:
        total = sum(split.values()) or 1
        shares = ", ".join(f"v{v} {w / total:.0%}" for v, w in sorted(split.items()))
        lines.append(
            f"split: {shares}"
            + (f" (sticky by {view.get('key_header')})" if view.get("sticky") else "")
        )
    if view.get("shadow") is not None:
        stats = view.get("shadow_stats") or {}
        rate = stats.get("agreement")
        lines.append(
            f"shadow: v{view['shadow']}, {stats.get('compared', 0)} compared, "
            + (f"{rate:.1%} agree" if rate is not None else "no answers yet")
            + f", {stats.get('dropped', 0)} dropped"
        )
    if not split and view.get("shadow") is None:
        lines.append("no split, no shadow: every request goes to the default")
    return "\n".join(lines)


@handles_errors
def _log(args: argparse.Namespace) -> int:
    from easytensor_jupyter.traffic import get_log_settings, set_log_settings

    client = connect(args)
    model_id = client.find_model(args.model)["id"]
    if args.mode is None and args.keep is None and args.keep_mb is None:
        settings = get_log_settings(client, model_id)
    else:
        settings = set_log_settings(
            client, model_id, args.mode, keep=args.keep, keep_mb=args.keep_mb
        )
    emit(args, settings, describe_log(settings))
    return 0


@handles_errors
def _traffic(args: argparse.Namespace) -> int:
    from easytensor_jupyter import traffic

    chosen = [args.split is not None or args.shadow is not None, args.promote, args.rollback]
    if sum(bool(c) for c in chosen) > 1:
        args.traffic_parser.error("give --split/--shadow, --promote N or --rollback, not several")
    if args.sticky and args.split is None:
        args.traffic_parser.error("--sticky goes with --split")
    split = None
    if args.split is not None:
        try:
            split = traffic.parse_split(args.split)
        except ValueError as exc:
            args.traffic_parser.error(str(exc))
    client = connect(args)
    model_id = client.find_model(args.model)["id"]
    if args.promote is not None:
        view = traffic.promote(client, model_id, args.promote)
    elif args.rollback:
        view = traffic.rollback(client, model_id)
    elif split is not None or args.shadow is not None:
        view = traffic.set_traffic(
            client, model_id, split=split, sticky=args.sticky, shadow=args.shadow
        )
    else:
        view = traffic.get_traffic(client, model_id)
    emit(args, view, describe_traffic(view))
    return 0
