"""Where a model's replicas run: what each one needs from a node, and how they spread.

Ray Serve places each replica on its own, with a best-effort SPREAD that rotates over the
nodes for every replica of every model in turn, so two replicas of one model often share a
node. ``spread`` (the default) caps the replicas of one version per node at
``ceil(replicas / nodes that fit)``: two replicas on two nodes go one per node, three go two
and one. The cap only changes when that quotient changes (Ray Serve then replaces the replicas
one by one); ``pack`` sets no cap and leaves the choice to Ray.

What a replica needs (CPUs, GPUs, custom resources) comes from the model's scaling, else from
the server's options; a replica that asks for a GPU runs its worker on ``cuda``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from easytensor_jupyter.bundle import Manifest
from easytensor_jupyter.requirements import missing

__all__ = [
    "Placement",
    "count_fitting",
    "per_node_cap",
    "replica_device",
    "replica_needs",
    "serve_options",
    "unsatisfiable",
]

Placement = Literal["spread", "pack"]
_SCHEDULED = ("CPU", "GPU")


def replica_needs(
    scaling: dict[str, Any] | None, replica_cpus: float, device: str
) -> dict[str, Any]:
    """Ray actor options for one replica: the model's own, else the server's defaults."""
    scaling = scaling or {}
    cpus = scaling.get("num_cpus")
    gpus = scaling.get("num_gpus")
    if gpus is None:
        gpus = 1 if device.startswith("cuda") else 0
    needs: dict[str, Any] = {"num_cpus": float(replica_cpus if cpus is None else cpus)}
    if gpus:
        needs["num_gpus"] = gpus
    if scaling.get("resources"):
        needs["resources"] = dict(scaling["resources"])
    return needs


def replica_device(scaling: dict[str, Any] | None, device: str) -> str:
    """The worker's torch device: the server's, unless the model says how many GPUs it wants."""
    gpus = (scaling or {}).get("num_gpus")
    if gpus is None:
        return device
    if gpus > 0:
        return device if device.startswith("cuda") else "cuda"
    return "cpu"


def _totals(needs: dict[str, Any]) -> dict[str, float]:
    wanted = {"CPU": float(needs.get("num_cpus", 0)), "GPU": float(needs.get("num_gpus", 0))}
    wanted.update({k: float(v) for k, v in (needs.get("resources") or {}).items()})
    return {k: v for k, v in wanted.items() if v > 0}


def _fits(node: dict[str, Any], wanted: dict[str, float]) -> bool:
    have = node.get("Resources") or {}
    return bool(node.get("Alive")) and all(have.get(k, 0.0) >= v for k, v in wanted.items())


def count_fitting(nodes: list[dict[str, Any]], needs: dict[str, Any]) -> int:
    """Live nodes (as ``ray.nodes()`` lists them) big enough for one replica."""
    wanted = _totals(needs)
    return sum(1 for node in nodes if _fits(node, wanted))


def unsatisfiable(nodes: list[dict[str, Any]], needs: dict[str, Any]) -> str | None:
    """Why no live node can take a replica with these needs, or None when one can."""
    wanted = _totals(needs)
    if any(_fits(node, wanted) for node in nodes):
        return None
    alive = [n for n in nodes if n.get("Alive")]
    offers = []
    for node in alive[:8]:
        have = node.get("Resources") or {}
        shown = {k: v for k, v in have.items() if k in _SCHEDULED or k in wanted}
        offers.append(", ".join(f"{k}={v:g}" for k, v in sorted(shown.items())) or "nothing")
    asked = ", ".join(f"{k}={v:g}" for k, v in sorted(wanted.items()))
    hint = "; start a node that has them (e.g. `ray start --num-gpus 1` or --resources)"
    return (
        f"no node of the Ray cluster offers {asked} per replica; its {len(alive)} live "
        f"node(s) offer: {' | '.join(offers) or 'none'}{hint}, or ask for less"
    )


def per_node_cap(
    count: int, fitting: int, placement: Placement, explicit: int | None
) -> int | None:
    """At most this many replicas of one version per node (None: no limit)."""
    if explicit:
        return explicit
    if placement != "spread" or fitting < 2:
        return None
    return max(1, math.ceil(count / fitting))


def pip_requirements(manifest: Manifest) -> list[str]:
    """The version's pins that this environment lacks (never torch): Ray installs them into
    the replica's own runtime environment, over the node's packages."""
    return [line for line in manifest.requirements if missing([line])]


def serve_options(
    manifest: Manifest,
    scaling: dict[str, Any] | None,
    *,
    replica_cpus: float,
    device: str,
    placement: Placement = "spread",
    max_replicas_per_node: int | None = None,
    fitting: int = 1,
) -> dict[str, Any]:
    """Deployment options: resources, scaling, placement, and room for a batch in flight."""
    batch = manifest.batching.max_batch_size if manifest.batching else 1
    actor = replica_needs(scaling, replica_cpus, device)
    pins = pip_requirements(manifest)
    if pins:
        actor["runtime_env"] = {"pip": {"packages": pins, "pip_check": False}}
    out: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": max(32, 2 * batch),
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 5.0,
        # The direct router drops a stopping replica within a second; this wait covers it.
        "graceful_shutdown_wait_loop_s": 2.0,
    }
    auto = (scaling or {}).get("autoscaling")
    if auto:
        out["num_replicas"] = "auto"
        out["autoscaling_config"] = {
            "min_replicas": auto["min_replicas"],
            "max_replicas": auto["max_replicas"],
            "initial_replicas": max(1, auto["min_replicas"]),
            "target_ongoing_requests": auto["target_ongoing_requests"],
        }
        count = int(auto["max_replicas"])
    else:
        out["num_replicas"] = count = int((scaling or {}).get("replicas") or 1)
    cap = per_node_cap(count, fitting, placement, max_replicas_per_node)
    if cap is not None:
        out["max_replicas_per_node"] = cap
    return out
