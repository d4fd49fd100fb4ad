"""``easytensor server``: which EasyTensor servers run on this machine, and which one is used.

Lists the servers recorded in ``$EASYTENSOR_HOME/servers/`` (``easytensor serve`` and embedded
servers of notebooks and Jupyter alike), asks each for ``/health``, and says which one the other
commands would use.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import requests

from easytensor_jupyter.cli._common import emit

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "server",
        help="list the EasyTensor servers running on this machine",
        description="List the servers running for this EASYTENSOR_HOME: URL, pid, who started "
        "them and when, and which one the other commands use.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(func=_list)


def _health(url: str) -> dict[str, Any] | None:
    try:
        response = requests.get(f"{url}/health", timeout=2)
        body: dict[str, Any] = response.json()
    except (requests.RequestException, ValueError):
        return None
    return body if response.status_code == 200 and isinstance(body, dict) else None


def _which(records: list[Any]) -> str:
    env = os.environ.get("EASYTENSOR_URL")
    if env:
        return f"Commands use EASYTENSOR_URL={env} (--url overrides it)."
    if len(records) == 1:
        return "Commands use this one when given no --url or EASYTENSOR_URL."
    if records:
        return "Commands need --url URL or EASYTENSOR_URL=URL to pick one (or ask on a terminal)."
    return ""


def _list(args: argparse.Namespace) -> int:
    from easytensor_jupyter import config, servers

    records = servers.running()
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    for record in records:
        health = _health(record.url)
        row: dict[str, Any] = {
            "url": record.url,
            "pid": record.pid,
            "owner": record.owner,
            "started_at": record.started_at,
            "store": record.store,
            "embedded": record.embedded,
            "user": record.user,
            "answering": health is not None,
            "models": health.get("models") if health else None,
        }
        rows.append(row)
        state = f"{health.get('models', 0)} models" if health else "not answering"
        lines.append(
            f"{record.url:28} {record.pid:<8} {record.started_local():16}  {state:14} "
            f"{record.owner}"
        )
    home = config.home()
    if lines:
        header = f"{'URL':28} {'PID':8} {'STARTED':16}  {'STATE':14} STARTED BY"
        text = "\n".join([header, *lines, "", _which(records)])
    else:
        text = (
            f"No EasyTensor server is running for {home}. Start one with `easytensor serve`; "
            "a notebook starts its own on its first deploy."
        )
        if os.environ.get("EASYTENSOR_URL"):
            text += f"\n{_which(records)}"
    emit(
        args,
        {"home": str(home), "servers": rows, "url_from_env": os.environ.get("EASYTENSOR_URL")},
        text,
    )
    return 0
