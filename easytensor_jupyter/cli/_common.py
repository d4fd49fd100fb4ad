"""What every client subcommand shares: connection options, JSON output, error reporting."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["add_connection_options", "connect", "emit", "handles_errors"]


def add_connection_options(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument(
        "--url", help="server URL (default: EASYTENSOR_URL, else the local embedded server)"
    )
    parser.add_argument(
        "--api-key", help="admin key (default: EASYTENSOR_API_KEY, else the local key file)"
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def connect(args: argparse.Namespace) -> Any:
    from easytensor_jupyter.client import Client

    return Client.connect(args.url, args.api_key, autostart=False)


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    as_json = getattr(args, "json", False) is True or getattr(args, "format", "text") == "json"
    print(json.dumps(payload, indent=2) if as_json else text)


def handles_errors(
    func: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """Print the plain error text and exit 1 instead of a traceback for expected failures."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from easytensor_jupyter.client import EasyTensorError
        from easytensor_jupyter.validate import ModelCheckError

        try:
            return func(args)
        except (EasyTensorError, ModelCheckError, FileNotFoundError) as exc:
            if getattr(args, "json", False) is True or getattr(args, "format", "text") == "json":
                code = getattr(exc, "code", "error")
                print(json.dumps({"error": {"code": code, "message": str(exc)}}), file=sys.stderr)
            else:
                print(f"error: {exc}", file=sys.stderr)
            return 1

    return wrapper
