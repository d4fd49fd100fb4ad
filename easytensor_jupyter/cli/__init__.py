"""The ``easytensor`` command: one module per subcommand, each adding its own parser."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from easytensor_jupyter._version import __version__

__all__ = ["main"]

SUBCOMMANDS = ("serve", "server", "models", "tokens", "query", "deploy", "logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="easytensor",
        description="Serve PyTorch models over HTTP and manage them.",
    )
    parser.add_argument("--version", action="version", version=f"easytensor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"easytensor_jupyter.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`easytensor models | head`): stop quietly, as other tools do.
        # Python would try to flush stdout again at exit and complain, so point it elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
