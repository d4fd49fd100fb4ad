"""The blocking calls into Ray and Ray Serve, run in threads by the backend."""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray import serve

from easytensor_jupyter.bundle import Manifest
from easytensor_jupyter.inference.backends.ray.replica import ModelReplica

__all__ = ["app_exists", "deploy", "instance_details", "live_nodes", "remove"]

log = logging.getLogger("easytensor.ray")


def app_exists(app: str) -> bool:
    return app in serve.status().applications


def live_nodes() -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [node for node in nodes if node.get("Alive")]


def instance_details() -> dict[str, Any]:
    """Every application's replicas as Serve's controller reports them (what ``serve status``
    and the dashboard show): id, state, node, pid, start time."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise RuntimeError("Ray Serve is not running")
    controller = client._controller
    details: dict[str, Any] = ray.get(controller.get_serve_instance_details.remote(), timeout=10)
    return details


def deploy(app: str, manifest: Manifest, options: dict[str, Any], cfg: dict[str, Any]) -> None:
    started = time.monotonic()
    deployment = ModelReplica.options(**options)  # type: ignore[attr-defined]
    # Serve gives every imperative deploy a random version, which replaces all replicas
    # even when only their count changed; the app name already pins what they run.
    deployment._version = app
    target = deployment.bind(app, manifest.name, manifest.to_json_bytes(), cfg)
    serve.run(target, name=app, route_prefix=None)
    log.info("%s: deployed %s in %.1f s", manifest.name, app, time.monotonic() - started)


def remove(app: str, keepers: list[Any]) -> None:
    """Delete the application, then what the keepers hold for it (bundle files, entries)."""
    serve.delete(app, _blocking=True)
    for keeper in keepers:
        if keeper is not None:
            ray.get(keeper.drop.remote(app))
