"""The curl command that sends exactly what the panel would send, safe to paste into a shell."""

from __future__ import annotations

import json
import shlex

from easytensor_jupyter.instances import encode_instance
from easytensor_jupyter.widgets._state import Query

__all__ = ["TOKEN_VARIABLE", "curl_command", "predict_url"]

TOKEN_VARIABLE = "EASYTENSOR_TOKEN"


def predict_url(endpoint: str, version: int | None) -> str:
    return endpoint if version is None else f"{endpoint}?version={version}"


def curl_command(
    endpoint: str, query: Query | None, *, token: str | None = None, version: int | None = None
) -> str:
    """Without a token the header names ``$EASYTENSOR_TOKEN`` in double quotes so the shell fills it.

    Inline bodies use ``--data-raw`` so a text starting with ``@`` is not read as a file name; a
    file input is referenced as ``@name`` rather than inlined as megabytes of base64.
    """
    auth = (
        shlex.quote(f"Authorization: Bearer {token}")
        if token
        else f'"Authorization: Bearer ${TOKEN_VARIABLE}"'
    )
    lines = [f"curl -sS -X POST {shlex.quote(predict_url(endpoint, version))}", f"-H {auth}"]
    if query is None:
        lines += ["-H 'Content-Type: application/json'", "--data-raw '{\"instances\": [...]}'"]
    elif query.mode == "text":
        lines += ["-H 'Content-Type: text/plain'", f"--data-raw {shlex.quote(str(query.value))}"]
    elif query.mode == "json":
        body = json.dumps({"instances": [encode_instance(query.value)]}, ensure_ascii=False)
        lines += ["-H 'Content-Type: application/json'", f"--data-raw {shlex.quote(body)}"]
    else:
        content_type = query.content_type or "application/octet-stream"
        name = query.filename or "input.bin"
        lines += [
            f"-H {shlex.quote('Content-Type: ' + content_type)}",
            f"--data-binary {shlex.quote('@' + name)}",
        ]
    return " \\\n  ".join(lines)
