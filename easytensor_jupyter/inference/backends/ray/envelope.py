"""What a replica sends back: msgpack, never a pickled object.

Ray unpickles whatever a replica returns, so a replica only ever returns ``bytes`` built here,
and worker failures travel as data that ``raise_error`` turns back into the local backend's
exceptions; the HTTP layer then maps them exactly as it does for local workers.
"""

from __future__ import annotations

from typing import Any

import msgpack

from easytensor_jupyter.inference.backends.errors import (
    WorkerBusy,
    WorkerCrashed,
    WorkerError,
    WorkerInputError,
    WorkerLoadError,
    WorkerRestarted,
    WorkerTimeout,
)

__all__ = ["decode_reply", "error_reply", "ok_reply"]

_KINDS: dict[type[WorkerError], str] = {
    WorkerTimeout: "timeout",
    WorkerCrashed: "crashed",
    WorkerBusy: "busy",
    WorkerInputError: "input",
    WorkerRestarted: "restarted",
    WorkerLoadError: "load",
}


def _pack(reply: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(reply, use_bin_type=True)
    return packed


def ok_reply(results: list[Any]) -> bytes:
    return _pack({"ok": results})


def error_reply(exc: BaseException | dict[str, Any]) -> bytes:
    """An error as data; a load error keeps its stage, message and detail."""
    if isinstance(exc, dict):
        return _pack({"err": {"kind": "load", "error": exc}})
    kind = next((k for t, k in _KINDS.items() if isinstance(exc, t)), "error")
    body: dict[str, Any] = {"kind": kind, "message": str(exc)}
    if isinstance(exc, WorkerLoadError):
        body["error"] = exc.error
    if isinstance(exc, WorkerCrashed):
        body["returncode"] = exc.returncode
    return _pack({"err": body})


def decode_reply(raw: object) -> list[Any]:
    """The outcomes of a replica's reply, or the matching WorkerError raised."""
    if not isinstance(raw, bytes):
        raise WorkerRestarted(f"the replica answered a {type(raw).__name__}, not bytes")
    reply = msgpack.unpackb(raw, raw=False)
    if "ok" in reply:
        results: list[Any] = reply["ok"]
        return results
    err = reply.get("err") or {}
    kind, message = err.get("kind"), str(err.get("message", "the replica failed"))
    if kind == "load":
        raise WorkerLoadError(err.get("error") or {"stage": "worker", "message": message})
    if kind == "timeout":
        raise WorkerTimeout(message)
    if kind == "crashed":
        raise WorkerCrashed(err.get("returncode"))
    if kind == "busy":
        raise WorkerBusy(message)
    if kind == "input":
        raise WorkerInputError(message)
    if kind == "restarted":
        raise WorkerRestarted(message)
    raise WorkerError(message)
