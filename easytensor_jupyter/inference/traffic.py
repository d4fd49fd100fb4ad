"""Which version answers a request, and what happens after: canary splits, shadow copies, the
request log and per-version metrics.

Routing happens here, above the serving backend, so the local and the Ray backend split traffic
alike. A split is weights per version; with ``sticky`` a request's ``X-EasyTensor-Key`` header
hashes to a fixed bucket, so one caller keeps seeing one version. A shadow version gets a copy
of each routed request after the live answer is built: the copy waits in a bounded queue (when
full, the copy is dropped, never the live request), runs in the background, and its answer is
logged beside the live one with whether they agree; it is never returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import time
from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from easytensor_jupyter.inference.request_log import RequestLog
from easytensor_jupyter.inference.store.request_log import LogSettings

if TYPE_CHECKING:
    from easytensor_jupyter.inference.api.auth import Principal
    from easytensor_jupyter.inference.api.bodies import PredictBodies
    from easytensor_jupyter.inference.state import AppState

__all__ = ["KEY_HEADER", "VERSION_HEADER", "Traffic", "same_answer"]

log = logging.getLogger("easytensor.server")

VERSION_HEADER = "X-EasyTensor-Version"
KEY_HEADER = "X-EasyTensor-Key"
_SHADOW_QUEUE = 64
_SHADOW_WORKERS = 2
_REFRESH_S = 5.0
_SHADOW_MAX_BODY = 4 << 20


def same_answer(a: Any, b: Any, rel: float = 1e-6) -> bool:
    """Equal answers, floats within a relative tolerance (two builds may round differently)."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool):
            return bool(a == b)
        if isinstance(a, int | float) and isinstance(b, int | float):
            return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-9)
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_answer(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_answer(a[k], b[k], rel) for k in a)
    return bool(a == b)


@dataclass(frozen=True)
class _Split:
    bounds: tuple[float, ...]
    versions: tuple[int, ...]
    sticky: bool

    @classmethod
    def of(cls, traffic: dict[str, Any]) -> _Split | None:
        split = traffic.get("split") or {}
        total = sum(split.values())
        if not split or total <= 0:
            return None
        bounds, acc = [], 0.0
        versions = sorted(split, key=int)
        for v in versions:
            acc += split[v] / total
            bounds.append(acc)
        return cls(tuple(bounds), tuple(int(v) for v in versions), bool(traffic.get("sticky")))

    def pick(self, key: str | None) -> int:
        if self.sticky and key:
            digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
            r = int.from_bytes(digest, "big") / 2.0**64
        else:
            r = random.random()
        return self.versions[min(bisect_right(self.bounds, r), len(self.versions) - 1)]


class Traffic:
    def __init__(self, state: AppState, request_log: RequestLog) -> None:
        self.state = state
        self.log = request_log
        self.settings: dict[str, LogSettings] = {}
        self.splits: dict[str, _Split] = {}
        self.shadows: dict[str, int] = {}
        self.routed: frozenset[str] = frozenset()
        self.shadow_dropped: dict[str, int] = {}
        self._queue: asyncio.Queue[tuple[Any, ...]] | None = None
        self._bodies: PredictBodies | None = None

    # -- policies ----------------------------------------------------------------------------
    def load(self) -> None:
        """Read every model's settings from the registry (at start, and now and then when the
        registry is shared, so a change made through another server arrives here too)."""
        self.apply(self.state.store.requests.settings())

    async def reload(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.log.executor(), self.load)

    def apply(self, settings: dict[str, LogSettings]) -> None:
        splits, shadows = {}, {}
        for model_id, s in settings.items():
            traffic = s.traffic or {}
            split = _Split.of(traffic)
            if split is not None:
                splits[model_id] = split
            if traffic.get("shadow") is not None:
                shadows[model_id] = int(traffic["shadow"])
        self.settings, self.splits, self.shadows = settings, splits, shadows
        self.routed = frozenset(splits) | frozenset(shadows)
        self.log.apply(settings)

    def of(self, model_id: str) -> LogSettings:
        return self.settings.get(model_id) or LogSettings()

    def save(self, model_id: str, settings: LogSettings) -> None:
        self.state.store.requests.save_settings(model_id, settings)
        self.apply({**self.settings, model_id: settings})

    def route(self, model_id: str, key: str | None) -> int | None:
        split = self.splits.get(model_id)
        return split.pick(key) if split is not None else None

    # -- after an answer ---------------------------------------------------------------------
    def finish(
        self,
        model_id: str,
        version: int,
        routed: bool,
        elapsed: float,
        status: int,
        code: str,
        content_type: str,
        body: bytes,
        answer: Any,
        principal: Principal | None,
        bodies: PredictBodies,
    ) -> None:
        """Per-version metrics, the log record and the shadow copy; costs microseconds."""
        self.state.metrics.observe_version(model_id, version, status >= 400, elapsed)
        label = _label(principal)
        if self.log.wants(model_id, status >= 400):
            keep = body if len(body) <= self.log.limits.max_blob_bytes else None
            self.log.note(
                (model_id, version, "live", status, code, elapsed * 1000, label, content_type,
                 keep, len(body), answer, None, time.time())
            )  # fmt: skip
        shadow = self.shadows.get(model_id) if routed and status < 400 else None
        if shadow is not None and shadow != version and len(body) <= _SHADOW_MAX_BODY:
            self._bodies = bodies
            queue = self._queue
            item = (model_id, shadow, content_type, body, answer, label)
            if queue is None:
                return
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                self.shadow_dropped[model_id] = self.shadow_dropped.get(model_id, 0) + 1
                self.state.metrics.shadow.labels(model_id, str(shadow), "dropped").inc()

    async def _shadow_one(self, item: tuple[Any, ...]) -> None:
        from easytensor_jupyter.inference.api.predict import decode_body

        model_id, version, content_type, body, live, label = item
        state, bodies = self.state, self._bodies
        assert bodies is not None
        started = time.perf_counter()
        status, code, agrees = 200, "ok", False
        answer: Any = None
        try:
            record = await asyncio.to_thread(state.store.resolve_version, model_id, version)
            with bodies.lease() as lease:
                instances = await decode_body(content_type, body, bodies.limits, lease)
                results = await state.pool.predict(
                    (model_id, version),
                    lambda: state.spec(model_id, version, record.manifest),
                    instances,
                )
            if all(ok for ok, _ in results):
                answer = [value for _, value in results]
                agrees = same_answer(answer, live)
            else:
                status, code = 422, "model_error"
                answer = {"error": next(v for ok, v in results if not ok)}
        except Exception as exc:
            status, code = 502, getattr(exc, "code", type(exc).__name__)
            answer = {"error": {"message": str(exc)}}
        elapsed = time.perf_counter() - started
        state.metrics.observe_version(model_id, version, status >= 400, elapsed)
        result = "agree" if agrees else ("error" if status >= 400 else "differ")
        state.metrics.shadow.labels(model_id, str(version), result).inc()
        self.log.note(
            (model_id, version, "shadow", status, code, elapsed * 1000, label, content_type,
             body, len(body), answer, agrees, time.time())
        )  # fmt: skip

    async def _shadow_worker(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                await self._shadow_one(item)
            except Exception:
                log.exception("a shadow request failed")

    async def run(self) -> None:
        """The shadow workers, the log writer and (with a shared registry) policy refreshes."""
        self._queue = asyncio.Queue(_SHADOW_QUEUE)
        tasks = [asyncio.create_task(self._shadow_worker()) for _ in range(_SHADOW_WORKERS)]
        tasks.append(asyncio.create_task(self.log.run()))
        try:
            while True:
                await asyncio.sleep(_REFRESH_S)
                if self.state.store.shared:
                    with contextlib.suppress(Exception):
                        await self.reload()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await self.log.flush()


def _label(principal: Principal | None) -> str | None:
    if principal is None:
        return None
    if principal.kind == "admin":
        return "admin key"
    return principal.label or principal.token_id
