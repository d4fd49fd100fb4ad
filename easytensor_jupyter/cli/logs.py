"""``easytensor logs MODEL [--follow]``: a model's logged requests, newest last."""

from __future__ import annotations

import argparse
import json
from typing import Any

from easytensor_jupyter.cli._common import add_connection_options, connect, handles_errors

__all__ = ["add_parser", "describe_record"]

_INPUT_CHARS = 60


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "logs",
        help="show a model's logged requests (--follow to keep watching)",
        description="Requests are logged per model as `easytensor models log MODEL MODE` "
        "says (the server's --request-log by default).",
    )
    parser.add_argument("model", help="model id or name")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new ones")
    parser.add_argument("--limit", "-n", type=int, default=20, help="how many (default 20)")
    parser.add_argument("--version", type=int, help="only this version")
    parser.add_argument("--status", help="ok, error, an HTTP status or an error code")
    parser.add_argument(
        "--kind", choices=["live", "shadow", "all"], default="live", help="default live"
    )
    parser.add_argument("--since", help="epoch seconds or ISO 8601, e.g. 2026-12-01T12:00:00Z")
    add_connection_options(parser)
    parser.set_defaults(func=_run)


def _clip(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _INPUT_CHARS else text[: _INPUT_CHARS - 1] + "…"


def describe_record(r: dict[str, Any]) -> str:
    shown = _clip(r["input"]) if r.get("input") is not None else f"({r.get('input_note')})"
    agrees = ""
    if r.get("kind") == "shadow":
        agrees = "  agrees" if r.get("agrees") else "  differs"
    return (
        f"{r['time']}  v{r['version']}  {r['status']} {r['code']:<14} {r['latency_ms']:>8.2f} ms"
        f"  {r.get('token') or '-'}  {shown} -> {_clip(r.get('output'))}{agrees}"
    )


@handles_errors
def _run(args: argparse.Namespace) -> int:
    from easytensor_jupyter.traffic import fetch_requests, follow_requests

    client = connect(args)
    model_id = client.find_model(args.model)["id"]
    params = {"version": args.version, "status": args.status, "kind": args.kind}
    params["since"] = args.since
    if args.follow:
        try:
            for record in follow_requests(client, model_id, limit=args.limit, **params):
                print(json.dumps(record) if args.json else describe_record(record), flush=True)
        except KeyboardInterrupt:
            return 0
        return 0
    records = fetch_requests(client, model_id, limit=args.limit, **params)["records"]
    if args.json:
        print(json.dumps({"records": records}, indent=2))
    elif not records:
        print(
            f"No requests logged for {model_id}. Its log is set with "
            f"`easytensor models log {model_id} all`."
        )
    else:
        print("\n".join(describe_record(r) for r in reversed(records)))
    return 0
