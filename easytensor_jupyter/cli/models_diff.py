"""``easytensor models diff MODEL A B``: what changed from version A to version B."""

from __future__ import annotations

import argparse
from typing import Any

from easytensor_jupyter.cli._common import add_connection_options, connect, emit, handles_errors

__all__ = ["add_diff_parser"]


def add_diff_parser(actions: Any) -> None:
    diff = actions.add_parser(
        "diff",
        help="what changed between two versions: code, shipped files, manifest, weights",
    )
    diff.add_argument("model", help="model id or name")
    diff.add_argument("old", type=int, help="the version to compare from, e.g. 2")
    diff.add_argument("new", type=int, help="the version to compare to, e.g. 3")
    add_connection_options(diff)
    diff.set_defaults(func=_diff)


@handles_errors
def _diff(args: argparse.Namespace) -> int:
    from easytensor_jupyter.version_diff import render

    client = connect(args)
    model = client.find_model(args.model)
    diff = client.diff_versions(model["id"], args.old, args.new)
    emit(args, diff, render(diff, model["name"]))
    return 0
