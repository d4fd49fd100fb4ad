"""``easytensor tokens [create|list|revoke] MODEL``."""

from __future__ import annotations

import argparse
from typing import Any

from easytensor_jupyter.cli._common import add_connection_options, connect, emit, handles_errors

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("tokens", help="create, list and revoke query tokens of a model")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a query token (shown once)")
    create.add_argument("model", help="model id or name")
    add_connection_options(create)
    create.set_defaults(func=_create)
    listing = actions.add_parser("list", help="list a model's tokens (no secrets)")
    listing.add_argument("model")
    add_connection_options(listing)
    listing.set_defaults(func=_list)
    revoke = actions.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("model")
    revoke.add_argument("token_id")
    add_connection_options(revoke)
    revoke.set_defaults(func=_revoke)


@handles_errors
def _create(args: argparse.Namespace) -> int:
    client = connect(args)
    token = client.create_token(client.find_model(args.model)["id"])
    emit(args, token, f"Token {token['id']} (shown once, keep it secret):\n{token['token']}")
    return 0


@handles_errors
def _list(args: argparse.Namespace) -> int:
    client = connect(args)
    tokens = client.list_tokens(client.find_model(args.model)["id"])
    lines = [
        f"{t['id']}  created {t['created_at']}  {'revoked' if t['revoked'] else 'active'}"
        for t in tokens
    ]
    emit(args, {"tokens": tokens}, "\n".join(lines) or "No tokens.")
    return 0


@handles_errors
def _revoke(args: argparse.Namespace) -> int:
    client = connect(args)
    model_id = client.find_model(args.model)["id"]
    client.revoke_token(model_id, args.token_id)
    emit(args, {"revoked": args.token_id}, f"Revoked {args.token_id}.")
    return 0
