"""The ``easytensor`` command: one module per subcommand, each adding its own parser."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from easytensor_jupyter._version import __version__

__all__ = ["main"]

SUBCOMMANDS = ("serve", "models", "tokens", "query", "deploy")


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
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
