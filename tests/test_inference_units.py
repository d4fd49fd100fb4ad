"""Server parts in process: frames, the store, the body bridge, error mapping."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from bundles import Bundle

from easytensor_jupyter.bundle import read_bundle_stream
from easytensor_jupyter.inference.api.predict import _worker_error
from easytensor_jupyter.inference.api.upload import BodyBridge
from easytensor_jupyter.inference.backends.errors import (
    WorkerBusy,
    WorkerCrashed,
    WorkerRestarted,
    WorkerTimeout,
)
from easytensor_jupyter.inference.runtime.protocol import (
    FrameError,
    decode_body,
    encode_frame,
    recv_frame,
    send_frame,
)
from easytensor_jupyter.inference.store import Store
from easytensor_jupyter.inference.store.blobs import PinningSink


def test_frames_round_trip_over_a_socketpair() -> None:
    left, right = socket.socketpair()
    message = {"t": "predict", "requests": [{"id": 1, "instances": [b"\x00\xff", "é", 1.5, None]}]}
    send_frame(left, message)
    assert recv_frame(right) == message
    left.close()
    assert recv_frame(right) is None
    right.close()
    assert decode_body(encode_frame({"t": "x", 1: 2})[4:]) == {"t": "x", 1: 2}
    with pytest.raises(FrameError):
        decode_body(b"\xc1")
    with pytest.raises(FrameError):
        decode_body(encode_frame({"no_type": 1})[4:])


def test_worker_errors_map_to_statuses() -> None:
    busy = _worker_error(WorkerBusy("full"))
    assert (busy.status, busy.code, busy.headers) == (503, "overloaded", {"Retry-After": "1"})
    assert _worker_error(WorkerRestarted("gone")).status == 503
    assert _worker_error(WorkerTimeout("slow")).status == 504
    crashed = _worker_error(WorkerCrashed(-11))
    assert crashed.status == 502 and crashed.detail == {"exit_code": None, "signal": 11}
    assert "SIGSEGV" in crashed.message


def _ingest(store: Store, bundle: Bundle) -> PinningSink:
    sink = PinningSink(store.blobs)
    read_bundle_stream(_Reader(bundle.tar_bytes()), sink)
    return sink


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def read(self, size: int = -1) -> bytes:
        size = len(self.data) if size < 0 else size
        out, self.data = bytes(self.data[:size]), self.data[size:]
        return out


def test_body_bridge_applies_backpressure() -> None:
    async def scenario() -> tuple[bytes, int]:
        bridge = BodyBridge(asyncio.get_running_loop(), high_water=1000)
        pumped = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal pumped
            for i in range(50):
                pumped += 100
                yield bytes([i]) * 100

        pump = asyncio.create_task(bridge.pump(body()))
        await asyncio.sleep(0.05)
        held = pumped
        data = await asyncio.to_thread(_read_all, bridge)
        await pump
        return data, held

    data, held = asyncio.run(scenario())
    assert data == b"".join(bytes([i]) * 100 for i in range(50))
    assert held <= 1200, "the pump must wait while the reader is behind"


def test_body_bridge_hands_over_whole_pieces_and_splits_large_ones() -> None:
    async def scenario() -> list[bytes]:
        bridge = BodyBridge(asyncio.get_running_loop())

        async def body() -> AsyncIterator[bytes]:
            yield b"a" * 100
            yield bytes(range(256)) * 4

        pump = asyncio.create_task(bridge.pump(body()))
        await pump
        reads = []
        while chunk := await asyncio.to_thread(bridge.read, 333):
            reads.append(chunk)
        return reads

    reads = asyncio.run(scenario())
    assert [len(r) for r in reads] == [100, 333, 333, 333, 25]
    assert all(isinstance(r, bytes) for r in reads)
    assert b"".join(reads) == b"a" * 100 + bytes(range(256)) * 4


def _read_all(bridge: BodyBridge) -> bytes:
    parts = []
    while chunk := bridge.read(333):
        parts.append(chunk)
    return b"".join(parts)
