"""What every client subcommand shares: finding the server, JSON output, questions, errors.

With no ``--url`` and no ``EASYTENSOR_URL`` the command uses the server running on this machine
(``easytensor server`` lists them) and says which on stderr, so stdout stays the answer alone.
With several running it asks on a terminal, and otherwise lists them and stops.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "NO_SERVER",
    "add_connection_options",
    "confirm",
    "connect",
    "emit",
    "handles_errors",
    "interactive",
    "say",
]

NO_SERVER = (
    "No EasyTensor server is running on this machine and none is configured. Start one with "
    "`easytensor serve` (a notebook starts its own on its first deploy), or point at one with "
    "--url URL or EASYTENSOR_URL=URL."
)
SEVERAL_ADVICE = "Choose one with --url URL or EASYTENSOR_URL=URL."


def add_connection_options(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument(
        "--url",
        help="server URL (default: EASYTENSOR_URL, else the server running on this machine)",
    )
    parser.add_argument(
        "--api-key", help="admin key (default: EASYTENSOR_API_KEY, else the local key file)"
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def interactive() -> bool:
    """Questions need a person: stdin and stderr both on a terminal."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def say(line: str) -> None:
    """Tell the person, not the pipe: stderr."""
    print(line, file=sys.stderr, flush=True)


def _ask_server(records: Sequence[Any]) -> Any:
    say(f"{len(records)} EasyTensor servers are running on this machine:")
    for number, record in enumerate(records, 1):
        say(f"  {number}) {record.describe()}")
    for _ in range(3):
        sys.stderr.write(f"Which one? [1-{len(records)}] ")
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if not answer:
            break
        if answer.strip().isdigit() and 1 <= int(answer) <= len(records):
            return records[int(answer) - 1]
    from easytensor_jupyter.client import EasyTensorError

    raise EasyTensorError(f"No server chosen. {SEVERAL_ADVICE}", code="several_servers")


def connect(args: argparse.Namespace) -> Any:
    from easytensor_jupyter.client import Client, EasyTensorError, resolve_server

    resolved = resolve_server(
        args.url, choose=_ask_server if interactive() else None, advice=SEVERAL_ADVICE
    )
    if resolved is None:
        raise EasyTensorError(NO_SERVER, code="no_server")
    client = Client(resolved.url, args.api_key)
    client.source, client.server = resolved.source, resolved.record
    if resolved.record is not None:
        say(f"Using {resolved.record.describe()}")
    return client


def confirm(question: str, args: argparse.Namespace, *, verb: str = "go ahead") -> bool:
    """Yes with ``--yes``; on a terminal, ask; with nobody to ask, refuse and say how to go on."""
    if getattr(args, "yes", False):
        return True
    from easytensor_jupyter.client import EasyTensorError

    if not interactive():
        raise EasyTensorError(
            f"{question} Not answered, as no one is at a terminal: add --yes to {verb} "
            "without asking.",
            code="not_confirmed",
        )
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


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
