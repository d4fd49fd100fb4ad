"""Frames between the server and a worker: a 4-byte big-endian length, then one msgpack map.

msgpack carries bytes natively, so image inputs cross without base64, and it cannot smuggle
objects the way pickle can: the worker runs untrusted code, so the server must never decode
anything richer than plain data from it.

Messages (``t`` is the type):
    worker -> server  {"t": "ready", "pid", "batch"} | {"t": "load_error", "error": {...}}
                      {"t": "results", "results": [{"id", "outcomes": [[ok, value], ...]}]}
                      {"t": "stream", "events": [[id, "c", chunk] | [id, "e", None | error]]}
    server -> worker  {"t": "predict", "requests": [{"id", "instances": [...]}]} | {"t": "shutdown"}
                      {"t": "stream", "id", "input"} | {"t": "cancel", "id"}
A ``stream`` frame from the server starts the model's ``predict_stream`` on one input; the
worker answers with chunk events as the model yields them and one end event ("e"), whose
value is None or the error; ``cancel`` closes the generator.
A predict frame carries a list of requests so several can travel together: under load the
server packs every request that arrived in one event-loop turn into one frame (one write, one
wake-up of the worker), and the worker answers several in one results frame.

What a worker sends is capped (``--worker-max-output-mb``, ``MAX_OUTPUT_BYTES`` by default):
the server reads a frame's 4-byte length first and refuses one over the cap before reading
any of its body, so hostile model code writing to the socket itself cannot make the server
hold gigabytes. The worker's own code splits its answers to stay under the cap.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import msgpack

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_OUTPUT_BYTES",
    "FrameError",
    "FrameTooLarge",
    "decode_body",
    "encode_frame",
    "encode_request",
    "predict_frame",
    "read_frame",
    "recv_frame",
    "send_events",
    "send_frame",
]

MAX_FRAME_BYTES = 4 << 30
MAX_OUTPUT_BYTES = 64 << 20
_HEADER = struct.Struct(">I")


class FrameError(ValueError):
    """A frame that is too large or not a msgpack map."""


class FrameTooLarge(FrameError):
    """A frame whose announced size passes the reader's cap; its body was not read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a frame of {size} bytes is over the {limit} byte limit")
        self.size = size
        self.limit = limit


def encode_frame(message: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    if len(body) >= MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body)} bytes is over the {MAX_FRAME_BYTES} byte limit")
    return _HEADER.pack(len(body)) + body


def encode_request(request_id: int, instances: list[Any]) -> bytes:
    """One request of a predict frame, packed alone so that input it cannot carry fails only
    that request; ``predict_frame`` joins packed requests without packing them again."""
    packed: bytes = msgpack.packb({"id": request_id, "instances": instances}, use_bin_type=True)
    return packed


_PREDICT_HEAD: bytes = msgpack.packb({"t": "predict", "requests": None}, use_bin_type=True)[:-1]


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def predict_frame(requests: list[bytes]) -> bytes:
    """A predict frame holding requests packed by ``encode_request``."""
    size = len(_PREDICT_HEAD) + len(_array_header(len(requests))) + sum(map(len, requests))
    if size >= MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size} bytes is over the {MAX_FRAME_BYTES} byte limit")
    return b"".join((_HEADER.pack(size), _PREDICT_HEAD, _array_header(len(requests)), *requests))


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise FrameError(f"undecodable frame: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise FrameError("a frame must be a map with a string 't'")
    return message


async def read_frame(
    reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES
) -> dict[str, Any]:
    """Read one frame; raises ``asyncio.IncompleteReadError`` when the peer has gone and
    ``FrameTooLarge`` (having read only the header) for a frame over ``max_bytes``."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > max_bytes:
        raise FrameTooLarge(size, max_bytes)
    return decode_body(await reader.readexactly(size))


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            return None
        got += n
    return bytes(buf)


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """Blocking read of one frame; None when the peer closed the socket."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    body = _recv_exact(sock, size)
    if body is None:
        return None
    return decode_body(body)


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(encode_frame(message))


def _fits(event: list[Any], limit: int) -> list[Any]:
    """The event, or an end event with the error that kept it from being sent."""
    try:
        size = len(encode_frame({"t": "stream", "events": [event]}))
    except (TypeError, ValueError, OverflowError) as exc:
        error = {"code": "output_not_json", "message": f"a chunk cannot be sent: {exc}"}
        return [event[0], "e", {**error, "detail": None}]
    if size <= limit:
        return event
    message = (
        f"a chunk is {size / (1 << 20):.1f} MB, over the server's {limit / (1 << 20):g} MB "
        "limit (--worker-max-output-mb); yield smaller chunks"
    )
    return [event[0], "e", {"code": "output_too_large", "message": message, "detail": None}]


def send_events(sock: socket.socket, events: list[list[Any]], limit: int) -> list[int]:
    """Stream events in one frame, or one frame each when together they pass ``limit``; the
    ids of streams ended because a chunk could not be sent."""
    try:
        frame = encode_frame({"t": "stream", "events": events})
    except (TypeError, ValueError, OverflowError):
        frame = b""
    if frame and len(frame) <= limit:
        sock.sendall(frame)
        return []
    ended = []
    for event in events:
        sent = _fits(event, limit)
        if sent is not event and event[1] == "c":
            ended.append(event[0])
        sock.sendall(encode_frame({"t": "stream", "events": [sent]}))
    return ended
