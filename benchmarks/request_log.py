"""What logging every request costs: the tiny model with its request log off, next to the same
model with it set to ``all``, on one ``easytensor serve``, in one run.

    .venv/bin/python -m benchmarks.run --only log     # -> results/request_log.md, .json

Both models are the same bundle uploaded under two names, so they share the server, its worker
settings and the machine; the two settings take turns, round after round, so drift in the
machine's load hits both alike. The medians of the rounds are compared.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.cpu import Meter, local_parts
from benchmarks.load import wrk
from benchmarks.models import MODELS, build_bundle, request_body
from benchmarks.systems import Endpoint, easytensor_server

__all__ = ["log_cost"]

ROUNDS = 6
LEVELS = (1, 16)


def log_cost(work: Path, out: Path, seconds: float, workers: int) -> int:
    from easytensor_jupyter.client import Client

    model = MODELS["tiny"]
    bundle = build_bundle(work / "tiny", "bench-log", model.class_name, model.batching)
    body = work / "tiny.json"
    body.write_bytes(request_body("tiny"))
    home = work / "home-log"
    results: dict[str, dict[int, list[dict[str, Any]]]] = {
        "off": {c: [] for c in LEVELS},
        "all": {c: [] for c in LEVELS},
    }
    with easytensor_server(work / "logs", home, workers=workers) as server:
        client = Client(server.url, server.admin_key, timeout=300)
        endpoints = {}
        for mode in ("off", "all"):
            manifest = bundle / "manifest.json"
            data = json.loads(manifest.read_text())
            data["name"] = f"bench-log-{mode}"
            manifest.write_text(json.dumps(data))
            up = client.upload_bundle(bundle)
            client.request("PUT", f"/v1/models/{up.id}/request-log", json={"mode": mode})
            endpoints[mode] = Endpoint(
                f"{server.url}/v1/models/{up.id}/predict", f"Bearer {up.query_token}"
            )
            wrk(endpoints[mode].url, body, 8, 1, endpoints[mode].auth)
        for round_no in range(ROUNDS):
            for mode in ("off", "all") if round_no % 2 == 0 else ("all", "off"):
                for level in LEVELS:
                    meter = Meter(local_parts(server.pid))
                    meter.start()
                    result = wrk(endpoints[mode].url, body, level, seconds, endpoints[mode].auth)
                    row = {**asdict(result), "cpu_ms": meter.per_request_ms(result.requests)}
                    results[mode][level].append(row)
                    print(
                        f"  round {round_no + 1} log {mode:<3} c={level:<3} {result.rps:8.0f} "
                        f"req/s  p50 {result.p50_ms:6.2f} ms  server CPU "
                        f"{row['cpu_ms']['server']:.3f} ms/req  errors {result.errors}",
                        flush=True,
                    )
        logged = {
            mode: client.request("GET", f"/v1/models/{e.url.split('/')[-2]}/request-log").json()
            for mode, e in endpoints.items()
        }
    table = _markdown(results, logged, seconds, workers)
    (out / "request_log.json").write_text(
        json.dumps({"rounds": results, "log": logged, "seconds": seconds}, indent=2)
    )
    (out / "request_log.md").write_text(table)
    print(table)
    return 0


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def _markdown(
    results: dict[str, dict[int, list[dict[str, Any]]]],
    logged: dict[str, dict[str, Any]],
    seconds: float,
    workers: int,
) -> str:
    lines = [
        "# Request log cost",
        "",
        f"The tiny model on one `easytensor serve --workers {workers}`, its log off next to its "
        f"log `all`; {ROUNDS} alternating rounds of {seconds:g} s per level (wrk, 1 thread), "
        "medians of the rounds. Measured side by side in one run on a shared machine: the "
        "ratio is the number to read.",
        "",
        "| connections | log off req/s | log all req/s | all / off | log off p50 ms | "
        "log all p50 ms | server CPU ms/req off | all | all / off |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in LEVELS:
        off, on = results["off"][level], results["all"][level]
        ratio = _median(on, "rps") / _median(off, "rps")
        cpu_off = statistics.median(r["cpu_ms"]["server"] for r in off)
        cpu_on = statistics.median(r["cpu_ms"]["server"] for r in on)
        lines.append(
            f"| {level} | {_median(off, 'rps'):,.0f} | {_median(on, 'rps'):,.0f} | "
            f"{ratio:.3f} | {_median(off, 'p50_ms'):.2f} | {_median(on, 'p50_ms'):.2f} | "
            f"{cpu_off:.3f} | {cpu_on:.3f} | {cpu_on / cpu_off:.3f} |"
        )
    kept = logged["all"]
    lines += [
        "",
        f"The `all` model's log held {kept['records']:,} records ({kept['bytes'] / 1e6:.1f} MB; "
        f"retention {kept['keep']:,}) at the end, with {kept['dropped']:,} notes dropped.",
        "",
    ]
    return "\n".join(lines)
