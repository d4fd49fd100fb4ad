"""What Ray Serve and the replica directory say, joined: counts, lists and direct routes.

Serve's controller knows each replica's state, node, process and start time; the directory
knows what only the replica can tell (its direct address, whether its model loaded, its
device, the requests it answered). One view built from both, about once a second, serves
``GET /v1/models/{id}`` and the direct router alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = ["ClusterView", "join", "replica_state"]

_STATES = {
    "STARTING": "starting",
    "UPDATING": "starting",
    "RECOVERING": "starting",
    "RUNNING": "running",
    "PENDING_MIGRATION": "running",
    "STOPPING": "stopping",
}


@dataclass(frozen=True)
class ClusterView:
    counts: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    routes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def _iso(seconds: float | None) -> str | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def replica_state(serve_state: Any, node_id: str | None, entry: dict[str, Any] | None) -> str:
    """pending (no node yet), starting, running, stopping or failed (the model did not load)."""
    name = str(getattr(serve_state, "value", serve_state))
    state = _STATES.get(name, name.lower())
    if state == "starting" and not node_id:
        return "pending"
    if entry is not None and entry.get("state") == "failed" and state == "running":
        return "failed"
    return state


def join(details: dict[str, Any], entries: dict[str, dict[str, dict[str, Any]]]) -> ClusterView:
    """``details``: the controller's instance details; ``entries``: the directory's."""
    view = ClusterView()
    for app, app_details in (details.get("applications") or {}).items():
        known = entries.get(app, {})
        rows: list[dict[str, Any]] = []
        routes: dict[str, dict[str, Any]] = {}
        for deployment in (app_details.get("deployments") or {}).values():
            for replica in deployment.get("replicas") or ():
                rid = str(replica["replica_id"])
                entry = known.get(rid)
                state = replica_state(replica.get("state"), replica.get("node_id"), entry)
                rows.append(
                    {
                        "id": rid,
                        "node": replica.get("node_id") or "",
                        "node_ip": replica.get("node_ip"),
                        "state": state,
                        "started_at": _iso(replica.get("start_time_s")),
                        "requests": entry.get("served") if entry else None,
                        "device": entry.get("device") if entry else None,
                        "pid": replica.get("pid"),
                    }
                )
                if state == "running" and entry and entry.get("port"):
                    routes[rid] = entry
        rows.sort(key=lambda r: (r["started_at"] or "", r["id"]))
        view.replicas[app] = rows
        view.counts[app] = sum(1 for r in rows if r["state"] in ("running", "failed"))
        if routes:
            view.routes[app] = routes
    return view
