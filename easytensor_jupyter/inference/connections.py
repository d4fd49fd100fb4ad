"""Slow clients and too many connections, handled where uvicorn reads the socket.

uvicorn (httptools) has a keep-alive timeout but no header or body timeout: a client that
sends its headers a byte at a time, or never sends any, holds its connection for ever, and 200
such sockets sat open for 40 s untouched. ``limit_concurrency`` only answers 503 to the next
real request. This protocol adds, per connection:

- a header timeout: the request line and headers must be complete within S seconds of the
  connection opening (or, on a kept-alive connection, of the next request's first byte), and
  their size is capped;
- a body timeout: while a body is being read, S seconds without a byte closes it (not while
  the server itself holds reading back); the same bound applies to a response the client
  stops reading, and to the rest of a body after the answer was sent;
- a connection cap: past it, a new connection closes the one that has waited longest without
  a request in progress (slow headers, idle keep-alive, or the rest of a body already
  answered), so slow sockets cannot crowd out real queries; when every connection is busy,
  the new one gets 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from easytensor_jupyter.inference.options import ServeOptions

__all__ = ["MAX_HEADER_BYTES", "ConnectionLimits", "fit_open_files", "guarded_protocol"]

log = logging.getLogger("easytensor.server")

MAX_HEADER_BYTES = 64 << 10
_REPORT_EVERY_S = 60.0
_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int = MAX_HEADER_BYTES

    @classmethod
    def of(cls, options: ServeOptions) -> ConnectionLimits:
        return cls(options.header_timeout, options.body_timeout, options.max_connections)


class _Report:
    """Closed connections, logged once a minute at most so an attack cannot flood the log."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last = 0.0

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self.last >= _REPORT_EVERY_S:
            self.last = now
            shown = ", ".join(f"{n} {why}" for why, n in sorted(self.counts.items()))
            log.warning("closed slow or surplus connections: %s", shown)
            self.counts.clear()


class _Flow(FlowControl):
    """uvicorn's flow control, telling the connection when reading or writing is held."""

    def __init__(self, transport: asyncio.Transport, owner: _Guarded) -> None:
        super().__init__(transport)
        self._owner = owner

    def pause_reading(self) -> None:
        if not self.read_paused:
            super().pause_reading()
            self._owner.reading_held(True)

    def resume_reading(self) -> None:
        if self.read_paused:
            super().resume_reading()
            self._owner.reading_held(False)

    def pause_writing(self) -> None:
        if not self.write_paused:
            super().pause_writing()
            self._owner.writing_held(True)

    def resume_writing(self) -> None:
        if self.write_paused:
            super().resume_writing()
            self._owner.writing_held(False)


class _Guarded(HttpToolsProtocol):
    LIMITS: ClassVar[ConnectionLimits]
    REPORT: ClassVar[_Report]

    # phase: "headers" (a request is arriving), "body", "busy" (the app has the request),
    # "idle" (kept alive between requests).
    phase = "headers"
    since = 0.0
    _header_bytes = 0
    _timer: asyncio.TimerHandle | None = None
    _send_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _Flow(self.transport, self)
        self._enter("headers", self.LIMITS.header_timeout)
        if len(self.connections) > self.LIMITS.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)

    # -- timers ---------------------------------------------------------------------------
    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _enter(self, phase: str, timeout: float | None = None) -> None:
        self.phase = phase
        self.since = self.loop.time()
        self._cancel()
        if timeout is not None:
            self._timer = self.loop.call_later(timeout, self._expired)
        if phase == "headers":
            self._header_bytes = 0

    @property
    def waiting(self) -> bool:
        """No request in progress: headers still coming, idle, or the answer already sent."""
        if self.phase in ("headers", "idle"):
            return True
        return self.phase == "body" and self.cycle is not None and self.cycle.response_complete

    def _restart(self) -> None:
        self._cancel()
        self._timer = self.loop.call_later(self.LIMITS.body_timeout, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.phase == "headers":
            self.REPORT.add("header timeouts")
            if self._header_bytes:
                self._refuse(
                    408,
                    "header_timeout",
                    f"the request headers took longer than {self.LIMITS.header_timeout:g} s "
                    "(--header-timeout)",
                )
            else:
                self.transport.close()
        elif self.phase == "body":
            self.REPORT.add("body timeouts")
            self._refuse(
                408,
                "body_timeout",
                f"no part of the request body came for {self.LIMITS.body_timeout:g} s "
                "(--body-timeout)",
            )

    def reading_held(self, held: bool) -> None:
        if self.phase != "body" or self.cycle is None or self.cycle.response_complete:
            return
        if held:
            self._cancel()
        else:
            self._restart()

    def writing_held(self, held: bool) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if held:
            self._send_timer = self.loop.call_later(self.LIMITS.body_timeout, self._send_stalled)

    def _send_stalled(self) -> None:
        self._send_timer = None
        self.REPORT.add("stalled responses")
        self.transport.abort()

    # -- answers of our own -----------------------------------------------------------------
    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer with an error and close, unless an answer has already begun."""
        if self.cycle is None or not self.cycle.response_started:
            body = orjson.dumps({"error": {"code": code, "message": message, "detail": None}})
            head = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n"
                % (status, _REASONS[status], len(body))
            )
            self.transport.write(head + body)
        self.transport.close()

    def _make_room(self) -> None:
        now_open = [c for c in self.connections if not _closing(c)]
        if len(now_open) <= self.LIMITS.max_connections:
            return
        waiting = [c for c in now_open if c is not self and isinstance(c, _Guarded) and c.waiting]
        if waiting:
            oldest = min(waiting, key=lambda c: c.since)
            self.REPORT.add("connections over --max-connections")
            oldest.transport.close()
            return
        self.REPORT.add("refused connections (all busy)")
        self._refuse(
            503,
            "too_many_connections",
            f"the server has {self.LIMITS.max_connections} connections open, all busy "
            "(--max-connections); retry",
        )

    # -- parser and uvicorn callbacks --------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.phase == "idle":
            self._enter("headers", self.LIMITS.header_timeout)
        if self.phase == "headers":
            self._header_bytes += len(data)
        super().data_received(data)
        if (
            self.phase == "headers"
            and self._header_bytes > self.LIMITS.max_header_bytes
            and not self.transport.is_closing()
        ):
            self.REPORT.add("oversized headers")
            self._refuse(
                431,
                "headers_too_large",
                f"the request line and headers are over {self.LIMITS.max_header_bytes} bytes",
            )

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._enter("body", self.LIMITS.body_timeout)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        draining = self.cycle is not None and self.cycle.response_complete
        if self.phase == "body" and not draining and not self.flow.read_paused:
            self._restart()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:
            self._enter("idle")
            self._arm_idle()
        else:
            self._enter("busy")

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if self.phase == "busy" and not pipelined:
            self._enter("idle")
        elif self.phase == "body":
            # Answered before the body was read (an error): the rest may take one more window.
            self._restart()

    def _arm_idle(self) -> None:
        """uvicorn arms its keep-alive timer when the answer is sent; when the rest of the body
        came after that, arm it now (data_received disarmed it)."""
        if self.transport.is_closing() or self.timeout_keep_alive_task is not None:
            return
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )


def _closing(connection: Any) -> bool:
    transport = getattr(connection, "transport", None)
    return transport is None or bool(transport.is_closing())


def guarded_protocol(limits: ConnectionLimits) -> type[Any]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type("EasyTensorHttpProtocol", (_Guarded,), {"LIMITS": limits, "REPORT": _Report()})


def fit_open_files(max_connections: int, reserve: int = 256) -> int:
    """Raise the soft open-file limit so the connection cap can be reached; the cap that fits.

    Past the limit, accept() fails and asyncio stops accepting for a while, real queries and
    all, so the cap is lowered below it instead.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + reserve
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(16, soft - reserve)
        log.warning(
            "--max-connections %d does not fit the open-file limit of %d; using %d",
            max_connections,
            soft,
            fitted,
        )
        return fitted
    return max_connections
