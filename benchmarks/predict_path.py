"""Where a tiny request's CPU goes, and the throughput two cores allow: the bare ASGI floor,
``easytensor serve`` and LitServe, taking turns round after round in one run.

    .venv/bin/python -m benchmarks.run --only predict   # -> results/predict_path.md, .json

Each system's processes are metered from ``/proc`` (the app or control plane, and below it the
worker that runs the model), and wrk's own CPU from the benchmark's child usage. Their sum per
request bounds the throughput: two cores can do at most ``2 / sum`` requests a second. The
best the product could reach with its control plane as cheap as the floor app is
``2 / (floor app + worker + wrk)``; that figure is what the 0.5x target is set against.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.cpu import Meter, Parts, descendants, local_parts
from benchmarks.load import LoadResult, wrk
from benchmarks.models import MODELS, build_bundle, request_body
from benchmarks.systems import Endpoint, easytensor_server, floor, litserve

__all__ = ["predict_cost"]

ROUNDS = 3
LEVEL = 16
CORES = os.cpu_count() or 2
SYSTEMS = ("floor", "easytensor", "litserve")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _whole_tree(leader: int) -> Parts:
    """A third-party server counts as one part: its app and any inference processes."""
    return lambda procs: {"server": descendants(procs, [leader])}


def _metered(endpoint: Endpoint, body: Path, seconds: float, parts: Parts) -> dict[str, Any]:
    meter = Meter(parts)
    meter.start()
    before = _children_cpu_s()
    result: LoadResult = wrk(endpoint.url, body, LEVEL, seconds, endpoint.auth)
    spent = _children_cpu_s() - before
    cpu = meter.per_request_ms(result.requests)
    cpu["wrk"] = 1000.0 * spent / max(1, result.requests)
    return {**asdict(result), "cpu_ms": cpu}


@contextlib.contextmanager
def _system(name: str, work: Path, bundle: Path, round_no: int) -> Iterator[tuple[Endpoint, Parts]]:
    from easytensor_jupyter.client import Client

    logs = work / "logs"
    if name == "floor":
        with floor(logs) as endpoint:
            yield endpoint, _whole_tree(endpoint.pid)
    elif name == "litserve":
        with litserve(logs, bundle, 1, 0.0) as endpoint:
            yield endpoint, _whole_tree(endpoint.pid)
    else:
        # A fresh store each round: on the last one's, the upload is "unchanged" and its
        # version is still warming when the load starts.
        with easytensor_server(logs, work / f"home-predict-{round_no}") as server:
            up = Client(server.url, server.admin_key, timeout=300).upload_bundle(bundle)
            url = f"{server.url}/v1/models/{up.id}/predict"
            yield Endpoint(url, f"Bearer {up.query_token}"), local_parts(server.pid)


def predict_cost(work: Path, out: Path, seconds: float) -> int:
    model = MODELS["tiny"]
    bundle = build_bundle(work / "tiny", "bench-predict", model.class_name, model.batching)
    body = work / "tiny.json"
    body.write_bytes(request_body("tiny"))
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
    for round_no in range(ROUNDS):
        order = SYSTEMS if round_no % 2 == 0 else tuple(reversed(SYSTEMS))
        for name in order:
            with _system(name, work, bundle, round_no) as (endpoint, parts):
                wrk(endpoint.url, body, 8, 1, endpoint.auth)
                row = _metered(endpoint, body, seconds, parts)
            rounds[name].append(row)
            spent = "  ".join(f"{k} {v * 1000:.0f} us" for k, v in row["cpu_ms"].items())
            print(
                f"  round {round_no + 1} {name:<10} c={LEVEL} {row['rps']:8.0f} req/s  {spent}  "
                f"errors {row['errors']}",
                flush=True,
            )
    summary = _summary(rounds)
    table = _markdown(summary, seconds)
    (out / "predict_path.json").write_text(
        json.dumps({"rounds": rounds, "summary": summary, "seconds": seconds}, indent=2)
    )
    (out / "predict_path.md").write_text(table)
    print(table)
    return 0


def _summary(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, rows in rounds.items():
        parts = sorted({p for r in rows for p in r["cpu_ms"]})
        med = {p: statistics.median(r["cpu_ms"].get(p, 0.0) for r in rows) * 1000 for p in parts}
        total = sum(med.values())
        out[name] = {
            "rps": statistics.median(r["rps"] for r in rows),
            **{f"{p}_us": v for p, v in med.items()},
            "total_us": total,
            "ceiling_rps": CORES * 1e6 / total if total else 0.0,
        }
    ours, bare = out["easytensor"], out["floor"]
    best = bare["server_us"] + ours.get("worker_us", 0.0) + ours["wrk_us"]
    out["bound"] = {"best_rps": CORES * 1e6 / best, "best_us": best}
    return out


def _markdown(summary: dict[str, dict[str, float]], seconds: float) -> str:
    lines = [
        f"Tiny model, wrk (1 thread) at {LEVEL} connections, {seconds:.0f} s per run, "
        f"{ROUNDS} rounds taking turns; medians. CPU in microseconds per request "
        "(user + system, from /proc).",
        "",
        "| system | req/s | app / control plane | worker | wrk | sum | "
        f"ceiling on {CORES} cores | reached |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SYSTEMS:
        s = summary[name]
        reached = s["rps"] / s["ceiling_rps"] if s["ceiling_rps"] else 0.0
        lines.append(
            f"| {name} | {s['rps']:,.0f} | {s.get('server_us', 0):.0f} | "
            f"{s.get('worker_us', 0):.0f} | {s['wrk_us']:.0f} | {s['total_us']:.0f} | "
            f"{s['ceiling_rps']:,.0f} | {reached:.0%} |"
        )
    ours, bare, lit = summary["easytensor"], summary["floor"], summary["litserve"]
    bound = summary["bound"]
    lines += [
        "",
        f"- easytensor / floor: {ours['rps'] / bare['rps']:.2f}x (target 0.5x); "
        f"easytensor / LitServe: {ours['rps'] / lit['rps']:.2f}x (target 5x).",
        f"- With its control plane as cheap as the floor app ({bare['server_us']:.0f} us) and "
        f"the worker and wrk as measured, {CORES} cores allow at most "
        f"{bound['best_rps']:,.0f} req/s: {bound['best_rps'] / bare['rps']:.2f}x the floor.",
    ]
    return "\n".join(lines) + "\n"
