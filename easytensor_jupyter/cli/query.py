"""``easytensor query MODEL (--json '...' | --text '...' | --file PATH) [--format json]``."""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

from easytensor_jupyter.cli._common import add_connection_options, connect, emit, handles_errors
from easytensor_jupyter.cli.query_stream import print_stream

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("query", help="ask a model for a prediction")
    parser.add_argument("model", help="model id or name")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--json", "-j", dest="json_input", metavar="JSON", help="one JSON instance")
    given.add_argument("--text", "-t", help="one text instance")
    given.add_argument("--file", "-f", type=Path, help="one file sent as bytes")
    parser.add_argument("--token", help="query token (default: the admin key)")
    parser.add_argument("--version", type=int, help="a version other than the default")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="print the chunks of the model's predict_stream as they arrive",
    )
    add_connection_options(parser, json_flag=False)
    parser.set_defaults(func=_query)


@handles_errors
def _query(args: argparse.Namespace) -> int:
    client = connect(args)
    model_id = args.model if args.token else client.find_model(args.model)["id"]
    options = {"token": args.token, "version": args.version}
    if args.json_input is not None:
        try:
            instance = json.loads(args.json_input)
        except json.JSONDecodeError as exc:
            print(f"error: --json is not valid JSON: {exc}", file=sys.stderr)
            return 2
        if args.stream:
            return print_stream(client, model_id, instance, args)
        result = client.predict(model_id, [instance], **options)
    elif args.stream:
        if args.text is None:
            print("error: --stream takes --json or --text, not --file", file=sys.stderr)
            return 2
        return print_stream(client, model_id, args.text, args)
    elif args.text is not None:
        result = client.predict_raw(model_id, args.text, "text/plain", **options)
    else:
        content_type = mimetypes.guess_type(args.file.name)[0] or "application/octet-stream"
        if not content_type.startswith("image/"):
            content_type = "application/octet-stream"
        result = client.predict_raw(model_id, args.file.read_bytes(), content_type, **options)
    answer = result.predictions[0]
    payload = {
        "prediction": answer,
        "version": result.version,
        "latency_ms": round(result.latency_ms, 2),
    }
    text = answer if isinstance(answer, str) else json.dumps(answer, indent=2)
    emit(args, payload, str(text))
    return 0
