"""Frames on the direct connection between a control plane and a replica.

Each frame is a 4-byte big-endian length and a msgpack body: never a pickled object. The
first frame from the control plane is ``{"token": ...}``, the secret the replica registered in
the directory; a peer that sends anything else, or a first frame over 1 KiB, is dropped.
After it, requests are ``[id, instances]`` and answers ``[id, reply]``, where ``reply`` is the
same envelope bytes a replica returns through Ray Serve; ``[0, "drain"]`` from the replica
says it is about to stop.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

__all__ = ["AUTH_LIMIT", "FRAME_LIMIT", "FrameError", "frame", "read_frame"]

_LENGTH = struct.Struct("!I")
AUTH_LIMIT = 1 << 10
FRAME_LIMIT = 1 << 30


class FrameError(Exception):
    """A frame over its limit, or not msgpack."""


def frame(body: Any) -> bytes:
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return _LENGTH.pack(len(packed)) + packed


async def read_frame(reader: asyncio.StreamReader, limit: int = FRAME_LIMIT) -> Any:
    """The next frame's body; ``asyncio.IncompleteReadError`` at the end of the stream."""
    (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if size > limit:
        raise FrameError(f"a frame of {size} bytes is over the {limit} byte limit")
    data = await reader.readexactly(size)
    try:
        return msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise FrameError(f"a frame is not msgpack: {exc}") from None
