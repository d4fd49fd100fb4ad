"""What a request body may cost the server in memory, checked before it is decoded.

JSON decodes to Python objects many times its own size: ``[]`` is 3 bytes on the wire and about
64 in memory, so a 16 MB body of empty lists took 820 MB. ``scan_json`` bounds that with a few
``bytes.count`` passes over the body (C speed, no objects made): an upper bound on the items and
on the decoded size, refined by a second pass that ignores string contents only when the first
says no. ``BodyBudget`` bounds the sum over requests decoding at once: each request takes its raw
bytes as they arrive (three times: see ``take_raw``) and its decoded estimate before decoding, and
gives all back when answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast

from easytensor_jupyter.inference.api.errors import APIError
from easytensor_jupyter.inference.options import ServeOptions

__all__ = [
    "BodyBudget",
    "BodyLease",
    "DecodeLimits",
    "PredictBodies",
    "Scan",
    "scan_json",
]

log = logging.getLogger("easytensor.server")

_MB = 1 << 20
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# Bytes per decoded thing, from tracemalloc on orjson output (rounded up): a list 64, an object
# with a few keys 192, a number 32, a short string 58 plus its text.
_PER_LIST = 96
_PER_OBJECT = 256
_PER_VALUE = 48
_PER_QUOTE = 12
_RAW_COPIES = 3
_WAIT_S = 10.0
_TRIM_AFTER = 32 * _MB
_TRIM_DELAY_S = 1.0


@dataclass(frozen=True)
class DecodeLimits:
    max_items: int
    max_depth: int
    max_decoded_bytes: int
    max_instances: int

    @classmethod
    def of(cls, options: ServeOptions) -> DecodeLimits:
        return cls(
            max_items=options.max_json_items,
            max_depth=options.max_json_depth,
            max_decoded_bytes=int(options.max_decoded_mb * _MB),
            max_instances=options.max_instances,
        )


class Scan(NamedTuple):
    items: int
    decoded_bytes: int
    containers: int


def _count(body: bytes, text_bytes: int, strings: int | None = None) -> Scan:
    lists = body.count(b"[")
    objects = body.count(b"{")
    values = body.count(b",") + body.count(b":") + 1
    quotes = body.count(b'"') if strings is None else 2 * strings
    decoded = (
        text_bytes
        + _PER_LIST * lists
        + _PER_OBJECT * objects
        + _PER_VALUE * values
        + _PER_QUOTE * quotes
    )
    return Scan(values + lists + objects, decoded, lists + objects)


def _mb(n: int) -> str:
    return f"{n / _MB:,.0f} MB" if n >= 10 * _MB else f"{n / _MB:,.1f} MB"


def scan_json(body: bytes, limits: DecodeLimits) -> Scan:
    """Upper bounds for what ``orjson.loads(body)`` would build; an APIError past a limit."""
    extra = len(body) if b'"b64"' in body else 0
    scan = _count(body, len(body) + extra)
    if scan.items > limits.max_items or scan.decoded_bytes > limits.max_decoded_bytes:
        # Commas and brackets inside strings counted too; count again without string contents.
        bare, strings = _STRING.subn(b"", body)
        scan = _count(bare, len(body) + extra, strings)
    if scan.items > limits.max_items:
        raise APIError(
            413,
            "too_many_items",
            f"the JSON body holds about {scan.items:,} values, over the limit of "
            f"{limits.max_items:,} (--max-json-items); send fewer instances per request",
            {"limit": "max_json_items", "items": scan.items, "max_items": limits.max_items},
        )
    if scan.decoded_bytes > limits.max_decoded_bytes:
        raise APIError(
            413,
            "too_large",
            f"the JSON body would take about {_mb(scan.decoded_bytes)} of memory once decoded, "
            f"over the {_mb(limits.max_decoded_bytes)} limit (--max-decoded-mb); send fewer "
            "instances per request",
            {
                "limit": "max_decoded_mb",
                "decoded_bytes": scan.decoded_bytes,
                "limit_bytes": limits.max_decoded_bytes,
            },
        )
    return scan


class BodyBudget:
    """Bytes that request bodies in flight may hold together, raw and decoded.

    A request that does not fit waits for others to finish, up to a few seconds, then gets 503;
    any waiter that fits goes first, so small queries are not stuck behind a large one.
    """

    def __init__(self, limit_bytes: int, wait_s: float = _WAIT_S) -> None:
        self.limit = limit_bytes
        self.wait_s = wait_s
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _too_large(self, n: int) -> APIError:
        return APIError(
            413,
            "too_large",
            f"this request needs about {_mb(n)} of memory for its body, more than the whole "
            f"{_mb(self.limit)} budget for bodies in flight (--max-inflight-mb)",
            {"limit": "max_inflight_mb", "needed_bytes": n, "limit_bytes": self.limit},
        )

    async def take(self, n: int, held: int = 0) -> None:
        if n <= 0:
            return
        if n + held > self.limit:
            raise self._too_large(n + held)
        if self.used + n <= self.limit:
            self.used += n
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.wait_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
            if waiter.done() and not waiter.cancelled():
                self.give(n)
            waiter.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise APIError(
                503,
                "overloaded",
                f"other requests' bodies use the {_mb(self.limit)} budget for bodies in flight "
                "(--max-inflight-mb); retry",
                {"limit": "max_inflight_mb"},
                headers={"Retry-After": "1"},
            ) from None

    def give(self, n: int) -> None:
        self.used -= n
        for entry in list(self._waiters):
            size, waiter = entry
            if waiter.done():
                self._waiters.remove(entry)
            elif self.used + size <= self.limit:
                self.used += size
                self._waiters.remove(entry)
                waiter.set_result(None)


class BodyLease:
    """One request's share of the budget; ``release`` (or leaving its ``with``) gives it back."""

    def __init__(self, budget: BodyBudget, done: Callable[[BodyLease], None] | None = None) -> None:
        self.budget = budget
        self.held = 0
        self.peak = 0
        self._done = done

    def __enter__(self) -> BodyLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        if self._done is not None:
            self._done(self)

    async def take(self, n: int) -> None:
        await self.budget.take(n, self.held)
        self.held += n
        self.peak = max(self.peak, self.held)

    async def take_raw(self, n: int) -> None:
        """Raw body bytes count three times: the pieces as received, the joined body, and
        the frame that carries it to the worker (measured: about 3 MB per MB of a bytes body)."""
        await self.take(_RAW_COPIES * n)

    def release(self) -> None:
        if self.held:
            self.budget.give(self.held)
            self.held = 0


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None elsewhere (musl, macOS), where there is nothing to do."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast(Callable[[int], int], trim)


class PredictBodies:
    """The decode limits, the shared budget, and handing memory back after large bodies.

    glibc keeps freed heap memory for reuse instead of returning it to the system, so after
    one request of a million instances the server held 300 MB it no longer used. After a
    request whose body took more than 32 MB, ``malloc_trim`` gives free pages back once its
    answer has gone (a second later, at most once a second, and not while another large body
    is in flight, which would only take the memory again).
    """

    def __init__(self, options: ServeOptions) -> None:
        self.limits = DecodeLimits.of(options)
        self.max_body_bytes = options.max_body_bytes
        self.budget = BodyBudget(int(options.max_inflight_mb * _MB))
        self._trim = _load_malloc_trim()
        self._trim_pending = False

    def lease(self) -> BodyLease:
        return BodyLease(self.budget, self._lease_done)

    def _lease_done(self, lease: BodyLease) -> None:
        if lease.peak >= _TRIM_AFTER:
            self._schedule_trim()

    def _schedule_trim(self) -> None:
        if self._trim is None or self._trim_pending:
            return
        self._trim_pending = True
        asyncio.get_running_loop().call_later(_TRIM_DELAY_S, self._run_trim)

    def _run_trim(self) -> None:
        self._trim_pending = False
        if self._trim is None:
            return
        if self.budget.used >= _TRIM_AFTER:
            self._schedule_trim()
            return
        started = time.perf_counter()
        self._trim(0)
        log.debug("malloc_trim took %.1f ms", (time.perf_counter() - started) * 1000)
