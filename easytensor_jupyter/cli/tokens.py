"""``easytensor tokens [create|list|show|revoke] MODEL``.

``show`` prints a token kept on this machine (a notebook's, or ``easytensor deploy``'s) and
nothing else, so ``export EASYTENSOR_TOKEN=$(easytensor tokens show MODEL)`` works.
"""

from __future__ import annotations

import argparse
from typing import Any

from easytensor_jupyter.cli._common import add_connection_options, connect, emit, handles_errors

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("tokens", help="create, list, show and revoke query tokens of a model")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a query token (shown once)")
    create.add_argument("model", help="model id or name")
    create.add_argument("--label", help="where the token is used (default: CLI, user and host)")
    add_connection_options(create)
    create.set_defaults(func=_create)
    listing = actions.add_parser(
        "list", help="list a model's tokens: where made, created, last used (no secrets)"
    )
    listing.add_argument("model")
    add_connection_options(listing)
    listing.set_defaults(func=_list)
    show = actions.add_parser(
        "show",
        help="print the query token kept on this machine for a model (a notebook's or deploy's)",
    )
    show.add_argument("model", help="model id or name")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(func=_show)
    revoke = actions.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("model")
    revoke.add_argument("token_id")
    add_connection_options(revoke)
    revoke.set_defaults(func=_revoke)


@handles_errors
def _create(args: argparse.Namespace) -> int:
    from easytensor_jupyter.token_keeper import cli_label

    client = connect(args)
    label = args.label or cli_label("easytensor tokens create")
    token = client.create_token(client.find_model(args.model)["id"], label)
    emit(args, token, f"Token {token['id']} (shown once, keep it secret):\n{token['token']}")
    return 0


def _when(value: str | None) -> str:
    return value.replace("T", " ").rstrip("Z")[:16] if value else "never"


@handles_errors
def _list(args: argparse.Namespace) -> int:
    client = connect(args)
    tokens = client.list_tokens(client.find_model(args.model)["id"])
    lines = [
        f"{t['id']}  {'revoked' if t['revoked'] else 'active ':7}  created {_when(t['created_at'])}"
        f"  last used {_when(t.get('last_used_at')):16}  {t.get('label') or '(no label)'}"
        for t in tokens
    ]
    emit(args, {"tokens": tokens}, "\n".join(lines) or "No tokens.")
    return 0


@handles_errors
def _show(args: argparse.Namespace) -> int:
    from easytensor_jupyter.client import EasyTensorError
    from easytensor_jupyter.token_keeper import TokenKeeper

    keeper = TokenKeeper()
    kept = keeper.for_model(args.model)
    if not kept:
        raise EasyTensorError(
            f"No query token for {args.model!r} is kept in {keeper.path}: deploy it from a "
            f"notebook on this machine, or make one with `easytensor tokens create {args.model}`.",
            code="not_found",
        )
    newest = kept[0]
    emit(
        args,
        {
            "model_id": newest.model_id,
            "token_id": newest.token_id,
            "token": newest.token,
            "label": newest.label,
            "server": newest.server,
        },
        newest.token,
    )
    return 0


@handles_errors
def _revoke(args: argparse.Namespace) -> int:
    client = connect(args)
    model_id = client.find_model(args.model)["id"]
    client.revoke_token(model_id, args.token_id)
    emit(args, {"revoked": args.token_id}, f"Revoked {args.token_id}.")
    return 0
