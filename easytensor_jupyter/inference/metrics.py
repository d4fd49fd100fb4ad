"""Prometheus metrics on a registry of our own, so an embedding process's metrics stay apart.

Requests are labelled by route template (``/v1/models/{model_id}/predict``), not by raw path,
so a scan of random URLs cannot grow the label set without bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "easytensor_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.predict_latency = Histogram(
            "easytensor_predict_latency_seconds",
            "Time to answer a prediction, worker round trip included",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "easytensor_predictions",
            "Prediction requests by model and outcome (ok or an error code)",
            ["model", "outcome"],
            registry=r,
        )
        self.worker_restarts = Counter(
            "easytensor_worker_restarts",
            "Workers lost and replaced, by model and reason (crash, timeout, memory)",
            ["model", "reason"],
            registry=r,
        )
        self.uploads = Counter(
            "easytensor_uploads",
            "Bundle uploads by result (created, unchanged, rejected)",
            ["result"],
            registry=r,
        )
        self.bytes_received = Counter(
            "easytensor_upload_bytes_received", "Bundle file bytes received", registry=r
        )
        self.workers = Gauge("easytensor_workers", "Worker processes alive", registry=r)
        self.version_requests = Counter(
            "easytensor_version_requests",
            "Prediction requests answered by each model version (shadow copies included)",
            ["model", "version"],
            registry=r,
        )
        self.version_errors = Counter(
            "easytensor_version_errors",
            "Prediction requests each model version answered with an error",
            ["model", "version"],
            registry=r,
        )
        self.version_latency = Histogram(
            "easytensor_version_latency_seconds",
            "Time to answer a prediction, per model version",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.shadow = Counter(
            "easytensor_shadow_requests",
            "Shadow copies by model, shadow version and result (agree, differ, error, dropped)",
            ["model", "version", "result"],
            registry=r,
        )
        self._versions: dict[tuple[str, int], tuple[Any, Any, Any]] = {}

    def observe_version(self, model: str, version: int, failed: bool, seconds: float) -> None:
        children = self._versions.get((model, version))
        if children is None:
            label = str(version)
            children = self._versions[(model, version)] = (
                self.version_requests.labels(model, label),
                self.version_errors.labels(model, label),
                self.version_latency.labels(model, label),
            )
        children[0].inc()
        if failed:
            children[1].inc()
        children[2].observe(seconds)

    def track_workers(self, count: Callable[[], int]) -> None:
        self.workers.set_function(count)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope.get("method", ""), str(status)).inc()
