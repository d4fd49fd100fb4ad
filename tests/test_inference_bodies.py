"""What a query body may cost: the decoded-size estimate is an upper bound on what orjson really
builds, strings full of commas do not trip it, and the in-flight budget makes requests wait their
turn, refuses what can never fit, and lets small requests past a waiting large one."""

from __future__ import annotations

import asyncio
import tracemalloc

import orjson
import pytest

from easytensor_jupyter.inference.api.bodies import BodyBudget, DecodeLimits, scan_json
from easytensor_jupyter.inference.api.errors import APIError

LIMITS = DecodeLimits(
    max_items=1_000_000, max_depth=64, max_decoded_bytes=64 << 20, max_instances=100_000
)


def _decoded_bytes(body: bytes) -> int:
    tracemalloc.start()
    try:
        value = orjson.loads(body)
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del value
    return size


@pytest.mark.parametrize(
    "item",
    [b"[]", b"{}", b"0", b"123456", b"1.5", b'"a"', b'{"k":1}', b"[[[]]]", b'{"a":{}}', b"null"],
)
def test_the_estimate_is_an_upper_bound(item: bytes) -> None:
    body = b'{"instances":[' + b",".join([item] * 20_000) + b"]}"
    scan = scan_json(body, LIMITS)
    assert scan.decoded_bytes >= _decoded_bytes(body)
    assert scan.decoded_bytes <= 8 * _decoded_bytes(body) + len(body)


def test_empty_lists_are_refused_before_decoding() -> None:
    body = b'{"instances":[' + b"[]," * 700_000 + b"[]]}"
    with pytest.raises(APIError) as info:
        scan_json(body, LIMITS)
    assert info.value.status == 413 and info.value.code == "too_many_items"
    assert "--max-json-items" in info.value.message
    small_items = DecodeLimits(10**9, 64, 16 << 20, 100_000)
    with pytest.raises(APIError) as info:
        scan_json(body, small_items)
    assert info.value.code == "too_large" and "--max-decoded-mb" in info.value.message
    assert info.value.detail["decoded_bytes"] > 16 << 20


def test_commas_inside_strings_do_not_count() -> None:
    text = "a, b: [c], {d}, " * 200_000
    body = orjson.dumps({"instances": [text]})
    scan = scan_json(body, LIMITS)
    assert scan.items < 10 and scan.containers == 2
    assert scan.decoded_bytes < 2 * len(body)


def test_escaped_quotes_do_not_hide_values() -> None:
    body = b'{"instances":["\\"",' + b"[]," * 600_000 + b"[]]}"
    with pytest.raises(APIError, match="--max-json-items"):
        scan_json(body, LIMITS)


def test_budget_waits_refuses_and_lets_small_ones_pass() -> None:
    async def scenario() -> None:
        budget = BodyBudget(100, wait_s=0.3)
        await budget.take(70)
        with pytest.raises(APIError) as info:
            await budget.take(101)
        assert info.value.status == 413 and "--max-inflight-mb" in info.value.message
        big = asyncio.create_task(budget.take(50))
        await asyncio.sleep(0.01)
        assert not big.done()
        await asyncio.wait_for(budget.take(20), 0.1)
        assert budget.used == 90
        budget.give(70)
        await asyncio.wait_for(big, 0.1)
        assert budget.used == 70
        with pytest.raises(APIError) as info:
            await budget.take(40)
        assert info.value.status == 503 and info.value.headers == {"Retry-After": "1"}
        assert budget.used == 70
        budget.give(70)
        assert budget.used == 0 and not budget._waiters

    asyncio.run(scenario())


def test_a_cancelled_waiter_keeps_the_books_straight() -> None:
    """Cancelled while waiting, nothing is held; cancelled just as it was granted, either it
    gave the grant back or it returned holding it (asyncio.wait_for may finish either way)."""

    async def scenario() -> None:
        budget = BodyBudget(10, wait_s=5)
        await budget.take(10)
        waiter = asyncio.create_task(budget.take(5))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert budget.used == 10 and not budget._waiters
        waiter = asyncio.create_task(budget.take(5))
        await asyncio.sleep(0.01)
        budget.give(10)
        waiter.cancel()
        try:
            await waiter
        except asyncio.CancelledError:
            assert budget.used == 0
        else:
            assert budget.used == 5

    asyncio.run(scenario())
