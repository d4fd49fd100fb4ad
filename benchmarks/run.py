"""Run every benchmark on loopback and write ``results/results.md``, ``.json`` and ``.png``.

    .venv/bin/python -m benchmarks.run [--quick]
    .venv/bin/python -m benchmarks.run --only ray    # local vs Ray backend -> results/ray.*
    .venv/bin/python -m benchmarks.run --only log    # request log off vs all -> results/request_log.*
    .venv/bin/python -m benchmarks.run --only predict  # CPU per request -> results/predict_path.*
    .venv/bin/python -m benchmarks.run --only upload   # 1 GiB vs cp + sync -> results/upload.*

Ratios in the targets table come from this one run, side by side: the systems take turns on
the same machine, each alone while it is measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.cpu import Meter, local_parts, ray_parts
from benchmarks.load import in_process, wrk
from benchmarks.models import MODELS, build_bundle, native_instance, request_body
from benchmarks.procs import ROOT
from benchmarks.systems import (
    Endpoint,
    easytensor_server,
    floor,
    litserve,
    plain_fastapi,
    torchserve,
)
from benchmarks.upload import upload_cost, upload_only

__all__ = ["main"]

LEVELS = (1, 8, 16, 32)
CPU_LEVEL = 16
RAY_MODELS = ("tiny", "cnn")
RAY_REPLICAS = (1, 2)
# Serve's handle first (what every request took before the direct path), then the default.
RAY_ROUTES = (("handle", " via handle"), ("direct", ""))


def _measure(
    name: str,
    model: str,
    endpoint: Endpoint,
    body: Path,
    seconds: float,
    meter: Meter | None = None,
) -> dict[str, Any]:
    """Warm up, then one bounded wrk run per concurrency level; with a ``meter``, the CPU
    each part of the system spends per request at ``CPU_LEVEL`` goes in ``row["cpu_ms"]``."""
    wrk(endpoint.url, body, 8, 1, endpoint.auth)
    row: dict[str, Any] = {"system": name, "model": model}
    for level in LEVELS:
        if meter is not None and level == CPU_LEVEL:
            meter.start()
        result = wrk(endpoint.url, body, level, seconds, endpoint.auth)
        row[f"c{level}"] = asdict(result)
        if meter is not None and level == CPU_LEVEL:
            row["cpu_ms"] = meter.per_request_ms(result.requests)
        print(
            f"  {name:<22} {model:<10} c={level:<3} {result.rps:9.0f} req/s  "
            f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
            flush=True,
        )
    return row


def _in_process_row(model: str, bundle: Path, seconds: float) -> dict[str, Any]:
    import torch

    from easytensor_jupyter.bundle import read_manifest_dir
    from easytensor_jupyter.inference.runtime.loader import load_bundle_dir

    torch.set_num_threads(1)
    net = load_bundle_dir(bundle, read_manifest_dir(bundle)).model
    x = native_instance(model)

    def call() -> Any:
        with torch.inference_mode():
            return net.predict_single(x)  # type: ignore[operator]

    result = in_process(call, seconds)
    print(f"  {'in-process':<22} {model:<10} {result.rps:9.0f} calls/s  p50 {result.p50_ms:.3f} ms")
    row: dict[str, Any] = {"system": "in-process predict_single", "model": model}
    row["c1"] = asdict(result)
    return row


def _check_answer(endpoint: Endpoint, body: Path, retries: int = 0) -> None:
    """Every system must answer correctly before its numbers count."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(endpoint.url, data=body.read_bytes(), method="POST")
    request.add_header("Content-Type", "application/json")
    if endpoint.auth:
        request.add_header("Authorization", endpoint.auth)
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = json.loads(response.read())
            break
        except (urllib.error.URLError, ConnectionError):
            if attempt == retries:
                raise
            time.sleep(1)
    if not payload.get("predictions"):
        raise RuntimeError(f"{endpoint.url} answered without predictions: {payload}")


def _ours(
    work: Path,
    bundles: dict[str, Path],
    bodies: dict[str, Path],
    seconds: float,
    workers: int,
    cpu: bool = False,
) -> list[dict[str, Any]]:
    from easytensor_jupyter.client import Client

    rows = []
    name = f"easytensor (workers={workers})"
    with easytensor_server(work / "logs", work / f"home-w{workers}", workers=workers) as server:
        client = Client(server.url, server.admin_key, timeout=300)
        for model, bundle in bundles.items():
            up = client.upload_bundle(bundle)
            endpoint = Endpoint(
                f"{server.url}/v1/models/{up.id}/predict", f"Bearer {up.query_token}"
            )
            _check_answer(endpoint, bodies[model])
            meter = Meter(local_parts(server.pid)) if cpu else None
            rows.append(_measure(name, model, endpoint, bodies[model], seconds, meter))
    return rows


def _wait_replicas(client: Any, model_id: str, want: int, timeout: float = 180.0) -> None:
    """Numbers only count once Ray Serve reports every replica RUNNING: a replica still
    loading would make the 2-replica row measure one replica plus a cold start."""
    deadline = time.monotonic() + timeout
    while True:
        model = client.get_model(model_id)
        if model.get("replicas_running") == want:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{want} replica(s) of {model_id} not running in {timeout:g} s")
        time.sleep(0.5)


def _ray_rows(
    work: Path, bundles: dict[str, Path], bodies: dict[str, Path], seconds: float
) -> list[dict[str, Any]]:
    """The same wrk levels against the Ray backend, with 1 and then 2 replicas per model,
    first through Ray Serve's handle (``--ray-route handle``), then on the direct path.

    The two "nodes" are two raylets on this machine, 2 CPUs each in Ray's books; the default
    placement (spread) puts the second replica on the second node, where a real second
    machine would be; the real cores are the same 2 for everything (wrk, server, replicas,
    workers, Ray itself). Each model is deleted after its rows, so its idle replicas don't sit
    next to the next one; each route gets a fresh control plane on the same cluster.
    """
    from benchmarks.raycluster import LOOPBACK_ENV, loopback_cluster
    from easytensor_jupyter.client import Client

    rows = []
    with loopback_cluster(work / "logs", nodes=2, cpus=2) as cluster:
        for route, label in RAY_ROUTES:
            args = ["--backend", "ray", "--ray-address", cluster.address]
            args += ["--ray-replica-cpus", "1", "--ray-route", route]
            with easytensor_server(
                work / "logs",
                work / f"home-ray-{route}",
                extra_args=args,
                extra_env=LOOPBACK_ENV,
                ready_timeout=240,
            ) as server:
                client = Client(server.url, server.admin_key, timeout=300)
                meter = Meter(ray_parts(server.pid, cluster.pid))
                for model in RAY_MODELS:
                    up = client.upload_bundle(bundles[model])
                    endpoint = Endpoint(
                        f"{server.url}/v1/models/{up.id}/predict", f"Bearer {up.query_token}"
                    )
                    for replicas in RAY_REPLICAS:
                        if replicas > 1:
                            client.set_scaling(up.id, replicas=replicas)
                        _wait_replicas(client, up.id, replicas)
                        _check_answer(endpoint, bodies[model], retries=30)
                        if route == "direct":
                            _wait_direct(client, up.id, endpoint, bodies[model], replicas)
                        name = f"easytensor on Ray{label} ({_plural(replicas, 'replica')})"
                        measure = partial(
                            _measure, name, model, endpoint, bodies[model], seconds, meter
                        )
                        rows.append(_timed(f"ray {route} {model} x{replicas}", measure))
                    client.delete_model(up.id)
    return rows


def _wait_direct(client: Any, model_id: str, endpoint: Endpoint, body: Path, replicas: int) -> None:
    """The control plane learns the replicas' doors within about a second of the first
    query; until then a query takes Serve's handle, which would blur the direct rows."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _check_answer(endpoint, body)
        listed = client.get_model(model_id).get("replicas") or []
        if sum(1 for r in listed if r.get("requests")) >= replicas:
            time.sleep(2.0)
            return
        time.sleep(0.5)


def _ray_only(args: argparse.Namespace, work: Path, seconds: float) -> int:
    """Just the local backend and the Ray backend, side by side, in a few minutes."""
    from benchmarks.raycluster import ray_missing

    missing = ray_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    bundles = {
        k: build_bundle(work / k, f"bench-{k}", MODELS[k].class_name, MODELS[k].batching)
        for k in RAY_MODELS
    }
    bodies = {}
    for key in RAY_MODELS:
        bodies[key] = work / f"{key}.json"
        bodies[key].write_bytes(request_body(key))
    rows = _timed(
        "easytensor", lambda: _ours(work, bundles, bodies, seconds, args.workers, cpu=True)
    )
    rows += _timed("easytensor on Ray", lambda: _ray_rows(work, bundles, bodies, seconds))
    _write_ray(args.out, rows, {"seconds": seconds, "workers": args.workers})
    return 0


def _write_ray(out: Path, rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    """``ray.md`` / ``.json`` / ``.png``: the local rows of tiny and CNN next to the Ray rows."""
    systems = ("easytensor (", "easytensor on Ray")
    mine = [r for r in rows if r["model"] in RAY_MODELS and r["system"].startswith(systems)]
    mine.sort(key=lambda r: RAY_MODELS.index(r["model"]))
    (out / "ray.json").write_text(json.dumps({"rows": mine, **extra}, indent=2))
    markdown = report.ray_markdown(mine, extra) + _ray_cpu_markdown(mine)
    (out / "ray.md").write_text(markdown)
    try:
        report.plot(mine, out / "ray.png")
    except ImportError as exc:  # the tables matter more than the picture
        print(f"no plot ({exc}; pip install -e '.[bench]')", file=sys.stderr)
    print(markdown)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _ray_cpu_markdown(rows: list[dict[str, Any]]) -> str:
    """CPU per request of each part at c16, and the direct path next to Serve's handle."""
    metered = [r for r in rows if "cpu_ms" in r]
    if not metered:
        return ""
    parts = ("server", "replica", "worker", "ray")
    lines = [
        "",
        f"CPU per request at c{CPU_LEVEL} (ms of user + system time, from /proc; server is "
        "the control plane, ray is GCS, raylets, Serve's controller and Ray's other "
        "processes):",
        "",
        "| model | system | c16 req/s | " + " | ".join(parts) + " | total |",
        "|---|---|---:|" + "---:|" * (len(parts) + 1),
    ]
    for r in metered:
        cpu = r["cpu_ms"]
        cells = [f"{cpu[p]:.2f}" if p in cpu else "" for p in parts]
        total = sum(cpu.values())
        rps = r[f"c{CPU_LEVEL}"]["rps"]
        lines.append(
            f"| {r['model']} | {r['system']} | {rps:,.0f} | " + " | ".join(cells) + f" | "
            f"{total:.2f} |"
        )
    lines.append("")
    for model in dict.fromkeys(r["model"] for r in metered):
        for replicas in RAY_REPLICAS:
            tag = f"({replicas} replica"
            handle = next(
                (
                    r
                    for r in metered
                    if r["model"] == model
                    and r["system"].startswith(f"easytensor on Ray via handle {tag}")
                ),
                None,
            )
            direct = next(
                (
                    r
                    for r in metered
                    if r["model"] == model and r["system"].startswith(f"easytensor on Ray {tag}")
                ),
                None,
            )
            if handle and direct:
                speed = direct["c16"]["rps"] / handle["c16"]["rps"]
                saved = handle["cpu_ms"]["server"] - direct["cpu_ms"]["server"]
                gap = handle["c1"]["p50_ms"] - direct["c1"]["p50_ms"]
                lines.append(
                    f"- {model}, {_plural(replicas, 'replica')}: direct path vs Serve's handle "
                    f"at c16 {speed:.2f}x the throughput, {saved:.2f} ms less control-plane "
                    f"CPU per request, c1 p50 {gap:.2f} ms lower."
                )
    return "\n".join(lines) + "\n"


def _cold_start(work: Path, repeats: int) -> dict[str, Any]:
    """Upload -> first answer on a running server, next to build + load + first call in-process."""
    import torch

    from easytensor_jupyter.bundle import read_manifest_dir
    from easytensor_jupyter.client import Client
    from easytensor_jupyter.inference.runtime.loader import load_bundle_dir

    spec = MODELS["cnn"]
    x = native_instance("cnn")
    local: list[float] = []
    served: list[float] = []
    with easytensor_server(work / "logs", work / "home-cold") as server:
        client = Client(server.url, server.admin_key, timeout=300)
        warm = build_bundle(work / "cold-warm", "warm", spec.class_name, None)
        client.upload_bundle(warm)  # the server's first model also starts its standby worker
        time.sleep(3)
        for i in range(repeats):
            bundle = build_bundle(
                work / f"cold-{i}", f"cold-{i}", spec.class_name, None, seed=i + 1
            )
            started = time.perf_counter()
            net = load_bundle_dir(bundle, read_manifest_dir(bundle)).model
            with torch.inference_mode():
                net.predict_single(x)  # type: ignore[operator]
            local.append(time.perf_counter() - started)
            started = time.perf_counter()
            up = client.upload_bundle(bundle)
            client.predict(up.id, [request_body_instance()], token=up.query_token)
            served.append(time.perf_counter() - started)
            time.sleep(3)  # the standby worker refills between uploads
    local.sort()
    served.sort()
    return {"in_process_s": local[len(local) // 2], "served_s": served[len(served) // 2]}


def request_body_instance() -> Any:
    from benchmarks.models import sample_instance

    return sample_instance("cnn")


def _timed(label: str, fn: Callable[[], Any]) -> Any:
    print(f"== {label}", flush=True)
    started = time.perf_counter()
    value = fn()
    print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument(
        "--quick", action="store_true", help="2 s per load level, skip the 1 GB upload"
    )
    parser.add_argument("--seconds", type=float, default=None, help="seconds per load level")
    parser.add_argument("--workers", type=int, default=1, help="--workers for easytensor serve")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        help="skip: litserve, fastapi, torchserve, ray, upload, cold",
    )
    parser.add_argument(
        "--only",
        choices=["ray", "log", "predict", "upload"],
        help="ray: only the local backend next to the Ray backend (1 and 2 replicas), "
        "written to results/ray.md, .json and .png; log: the request log off next to all, "
        "written to results/request_log.md and .json; predict: where a tiny request's CPU goes "
        "(floor, easytensor, LitServe) -> results/predict_path.md; upload: 1 GiB against cp + "
        "sync, round by round -> results/upload.md",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    skip = set(args.skip) | ({"upload"} if args.quick else set())
    args.out.mkdir(parents=True, exist_ok=True)
    # A plain SIGTERM would end Python without running the finally blocks that stop the
    # servers and the Ray cluster; as SystemExit it unwinds through them.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix="easytensor-bench-"))
    (work / "logs").mkdir()
    try:
        if args.only == "ray":
            return _ray_only(args, work, seconds)
        if args.only == "log":
            from benchmarks.request_log import log_cost

            return log_cost(work, args.out, seconds, args.workers)
        if args.only == "upload":
            return upload_only(work, args.out)
        if args.only == "predict":
            from benchmarks.predict_path import predict_cost

            return predict_cost(work, args.out, seconds)
        bundles = {
            key: build_bundle(work / key, f"bench-{key}", m.class_name, m.batching)
            for key, m in MODELS.items()
        }
        bodies = {}
        for key in MODELS:
            bodies[key] = work / f"{key}.json"
            bodies[key].write_bytes(request_body(key))
        rows: list[dict[str, Any]] = []
        for key in ("tiny", "cnn"):
            rows.append(
                _timed(f"in-process {key}", lambda k=key: _in_process_row(k, bundles[k], seconds))
            )  # type: ignore[misc]
        with floor(work / "logs") as endpoint:
            for key in ("tiny", "cnn"):
                rows.append(
                    _timed(
                        f"floor {key}",
                        lambda k=key: _measure(
                            "HTTP floor (bare ASGI)", k, endpoint, bodies[k], seconds
                        ),
                    )
                )  # type: ignore[misc]
        rows += _timed("easytensor", lambda: _ours(work, bundles, bodies, seconds, args.workers))
        ray_rows: list[dict[str, Any]] = []
        if "ray" not in skip:
            from benchmarks.raycluster import ray_missing

            missing = ray_missing()
            if missing:
                print(missing, flush=True)
            else:
                ray_rows = _timed(
                    "easytensor on Ray", lambda: _ray_rows(work, bundles, bodies, seconds)
                )
                rows += ray_rows
        if "fastapi" not in skip:
            for key in ("tiny", "cnn"):
                with plain_fastapi(work / "logs", bundles[key]) as endpoint:
                    _check_answer(endpoint, bodies[key])
                    rows.append(
                        _timed(
                            f"fastapi {key}",
                            lambda e=endpoint, k=key: _measure(
                                "plain FastAPI", k, e, bodies[k], seconds
                            ),
                        )
                    )  # type: ignore[misc]
        if "litserve" not in skip:
            for key, m in MODELS.items():
                batch = m.batching.max_batch_size if m.batching else 1
                wait = m.batching.max_wait_ms if m.batching else 0.0
                with litserve(work / "logs", bundles[key], batch, wait) as endpoint:
                    _check_answer(endpoint, bodies[key])
                    rows.append(
                        _timed(
                            f"litserve {key}",
                            lambda e=endpoint, k=key: _measure(
                                "LitServe", k, e, bodies[k], seconds
                            ),
                        )
                    )  # type: ignore[misc]
        if "torchserve" not in skip:
            for key, m in MODELS.items():
                batch = m.batching.max_batch_size if m.batching else 1
                wait = m.batching.max_wait_ms if m.batching else 0.0
                with torchserve(work / "logs", work, bundles[key], batch, wait) as endpoint:
                    _check_answer(endpoint, bodies[key], retries=60)
                    rows.append(
                        _timed(
                            f"torchserve {key}",
                            lambda e=endpoint, k=key: _measure(
                                "TorchServe", k, e, bodies[k], seconds
                            ),  # type: ignore[misc]
                        )
                    )
        extra: dict[str, Any] = {"seconds": seconds, "workers": args.workers}
        if "cold" not in skip:
            extra["cold"] = _timed("cold start", lambda: _cold_start(work, 3))
        if "upload" not in skip:
            extra["upload"] = _timed("1 GiB upload", lambda: upload_cost(work))
        (args.out / "results.json").write_text(json.dumps({"rows": rows, **extra}, indent=2))
        markdown = report.markdown(rows, extra)
        (args.out / "results.md").write_text(markdown)
        report.plot(rows, args.out / "results.png")
        print(markdown)
        if ray_rows:
            _write_ray(args.out, rows, extra)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
