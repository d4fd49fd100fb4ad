"""``easytensor serve``: run the inference server in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from easytensor_jupyter.config import DEFAULT_PORT

__all__ = ["add_parser"]


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the inference server",
        description="Serve uploaded models over HTTP. Binds to loopback unless --host says otherwise.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)"
    )
    parser.add_argument("--store", type=Path, help="store folder (default: $EASYTENSOR_HOME/store)")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="keep the registry (models, versions, tokens) in PostgreSQL, so several servers "
        "with the same --store folder share it: postgresql://user@host[:port]/database (a "
        "password is better kept in PGPASSWORD or ~/.pgpass; default: SQLite in the store folder)",
    )
    parser.add_argument(
        "--predict-timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help="seconds a prediction may take before its worker is restarted (default 30)",
    )
    parser.add_argument(
        "--load-timeout",
        type=_positive,
        default=300.0,
        metavar="S",
        help="seconds a model may take to load (default 300)",
    )
    parser.add_argument(
        "--max-body-mb",
        type=_positive,
        default=100.0,
        metavar="N",
        help="largest query body in MB (default 100)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=_positive,
        default=65536.0,
        metavar="N",
        help="largest model upload in MB (default 65536)",
    )
    parser.add_argument(
        "--idle-unload",
        type=_positive,
        default=900.0,
        metavar="S",
        help="stop a model's worker after this many idle seconds (default 900)",
    )
    parser.add_argument(
        "--max-workers",
        type=int,
        default=8,
        metavar="N",
        help="models kept loaded at once; the least recently used idle one is unloaded (default 8)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes per loaded model version; requests go to the least busy (default 1)",
    )
    parser.add_argument(
        "--no-standby",
        action="store_true",
        help="do not keep a spare worker with torch imported (saves memory, slower loads)",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="write $EASYTENSOR_HOME/server.json so local clients find this server",
    )
    parser.add_argument(
        "--owner-pid", type=int, metavar="PID", help="exit when this process is gone"
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from this origin (repeatable; default: none)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for workers (default cpu)")
    ray = parser.add_argument_group("scale-out on Ray Serve (docs/scale-out.md)")
    ray.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="what runs the models: worker processes on this machine (default), or Ray Serve",
    )
    ray.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="the Ray cluster to join, e.g. 10.0.0.5:6379 (default: start a local Ray)",
    )
    ray.add_argument(
        "--ray-namespace", default="easytensor", help="Ray namespace (default easytensor)"
    )
    ray.add_argument(
        "--ray-replica-cpus",
        type=float,
        default=1.0,
        help="CPUs Ray reserves for each replica (default 1)",
    )
    ray.add_argument(
        "--ray-max-replicas-per-node",
        type=int,
        metavar="N",
        help="at most N replicas of one version per node, to spread them out",
    )
    group = parser.add_argument_group("worker sandbox (model code is untrusted)")
    group.add_argument(
        "--worker-user",
        default="nobody",
        metavar="USER",
        help="when run as root, run workers as this user (default nobody; 'root' keeps root)",
    )
    group.add_argument(
        "--worker-network",
        action="store_true",
        help="let model code open network connections (default: no network in workers)",
    )
    group.add_argument(
        "--worker-memory-mb",
        type=_positive,
        metavar="N",
        help="replace a worker whose resident memory passes N MB (default: no limit)",
    )
    group.add_argument(
        "--worker-cpu-seconds",
        type=int,
        metavar="S",
        help="CPU seconds a worker may use in its life (RLIMIT_CPU; default: no limit)",
    )
    group.add_argument(
        "--worker-max-files",
        type=int,
        default=1024,
        metavar="N",
        help="open files per worker (RLIMIT_NOFILE; default 1024)",
    )
    group.add_argument(
        "--no-worker-sandbox",
        action="store_true",
        help="run workers without namespaces or another uid (rlimits too are skipped)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default info)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from easytensor_jupyter.inference.options import ServeOptions
    from easytensor_jupyter.inference.server import run

    options = ServeOptions(
        host=args.host,
        port=args.port,
        store=args.store,
        db=args.db,
        predict_timeout=args.predict_timeout,
        load_timeout=args.load_timeout,
        max_body_mb=args.max_body_mb,
        max_upload_mb=args.max_upload_mb,
        idle_unload=args.idle_unload,
        embedded=args.embedded,
        owner_pid=args.owner_pid,
        cors_origins=tuple(args.cors_origin),
        log_level=args.log_level,
        device=args.device,
        max_workers=max(1, args.max_workers),
        workers_per_model=max(1, args.workers),
        standby=not args.no_standby,
        sandbox=not args.no_worker_sandbox,
        worker_user=args.worker_user,
        worker_network=args.worker_network,
        worker_memory_mb=args.worker_memory_mb,
        worker_cpu_seconds=args.worker_cpu_seconds,
        worker_max_files=max(16, args.worker_max_files),
        backend=args.backend,
        ray_address=args.ray_address,
        ray_namespace=args.ray_namespace,
        ray_replica_cpus=args.ray_replica_cpus,
        ray_max_replicas_per_node=args.ray_max_replicas_per_node,
    )
    return run(options)
