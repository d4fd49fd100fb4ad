"""How a worker steps streams: one chunk per running stream per step, streams that arrive
together batched through ``predict_stream_batch``, ``None`` ending one stream of a batch,
cancelling closing the generator, and the parity check's ``collect_stream``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from easytensor_jupyter.bundle import joined_chunks
from easytensor_jupyter.inference.runtime.streams import Streams, collect_stream


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Spelling:
    def __init__(self) -> None:
        self.closed: list[str] = []
        self.batches: list[list[str]] = []

    def predict_stream(self, word: str) -> Iterator[str]:
        try:
            yield from word
        finally:
            self.closed.append(word)


class Batched(Spelling):
    def predict_stream_batch(self, words: list[str]) -> Iterator[list[Any]]:
        self.batches.append(list(words))
        try:
            for i in range(max(map(len, words))):
                yield [w[i] if i < len(w) else None for w in words]
        finally:
            self.closed.append("+".join(words))


def _run(streams: Streams, clock: Clock | None = None) -> dict[int, list[Any]]:
    got: dict[int, list[Any]] = {}
    for _ in range(50):
        if clock is not None:
            clock.now += 1.0
        for request_id, kind, value in streams.step():
            got.setdefault(request_id, []).append(value if kind == "c" else ("end", value))
        if not streams.busy and not streams.waiting:
            break
    return got


def test_single_streams_take_turns_a_chunk_each() -> None:
    model = Spelling()
    streams = Streams(model, max_batch=4, max_wait_s=0.0)
    streams.add(1, "ab")
    streams.add(2, "xyz")
    first = streams.step()
    assert first == [[1, "c", "a"], [2, "c", "x"]]
    rest = _run(streams)
    assert rest == {1: ["b", ("end", None)], 2: ["y", "z", ("end", None)]}


def test_streams_that_arrive_together_are_one_batch_and_none_ends_one() -> None:
    model = Batched()
    clock = Clock()
    streams = Streams(model, max_batch=8, max_wait_s=0.5, clock=clock)
    streams.add(1, "ab")
    streams.add(2, "wxyz")
    assert streams.step() == []  # still gathering for max_wait_s
    got = _run(streams, clock)
    assert model.batches == [["ab", "wxyz"]]
    assert got == {1: ["a", "b", ("end", None)], 2: ["w", "x", "y", "z", ("end", None)]}
    assert model.closed == ["ab+wxyz"]  # its finally ran once, at its end


def test_cancelling_closes_the_generator_and_a_batch_only_when_unwanted() -> None:
    model = Batched()
    streams = Streams(model, max_batch=2, max_wait_s=0.0)
    streams.add(1, "abcd")
    streams.add(2, "wxyz")
    streams.step()
    streams.cancel(1)
    assert model.closed == []
    assert [e[0] for e in streams.step()] == [2]
    streams.cancel(2)
    assert model.closed == ["abcd+wxyz"] and not streams.busy
    single = Spelling()
    alone = Streams(single, max_batch=1, max_wait_s=0.0)
    alone.add(7, "long")
    alone.step()
    alone.cancel(7)
    assert single.closed == ["long"]


def test_bad_steps_and_exceptions_end_the_streams_with_an_error() -> None:
    class Wrong(Spelling):
        def predict_stream_batch(self, words: list[str]) -> Iterator[list[Any]]:
            yield ["only one"]

    streams = Streams(Wrong(), max_batch=2, max_wait_s=0.0)
    streams.add(1, "a")
    streams.add(2, "b")
    events = streams.step()
    assert {e[2]["code"] for e in events} == {"bad_stream_batch"}

    class Boom(Spelling):
        def predict_stream(self, word: str) -> Iterator[str]:
            yield "ok"
            raise KeyError(word)

    boom = Streams(Boom(), max_batch=1, max_wait_s=0.0)
    boom.add(3, "w")
    assert boom.step() == [[3, "c", "ok"]]
    ((_, kind, error),) = boom.step()
    assert kind == "e" and error["code"] == "model_error"
    assert "predict_stream raised KeyError" in error["message"]

    plain = Streams(object(), max_batch=1, max_wait_s=0.0)
    assert plain.add(4, "x")[0][2]["code"] == "stream_unsupported"


def test_collect_stream_and_joined_chunks_for_the_parity_check() -> None:
    assert joined_chunks(collect_stream(Spelling(), "abc")) == "abc"
    assert joined_chunks(collect_stream(Batched(), "ab")) == "ab"

    class Numbers:
        def predict_stream(self, n: int) -> Iterator[dict[str, int]]:
            yield from ({"i": i} for i in range(n))

    assert joined_chunks(collect_stream(Numbers(), 2)) == [{"i": 0}, {"i": 1}]

    class Endless:
        def predict_stream(self, x: Any) -> Iterator[str]:
            while True:
                yield "x"

    with pytest.raises(ValueError, match="passed 10 chunks"):
        collect_stream(Endless(), None, limit=10)
