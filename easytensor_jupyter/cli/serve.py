"""``easytensor serve``: run the inference server in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from easytensor_jupyter.config import DEFAULT_PORT

__all__ = ["add_parser"]


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _add_limits(parser: Any) -> None:
    """What one client may cost the server; each is in docs/reliability.md ("Limits")."""
    group = parser.add_argument_group(
        "limits on what clients may cost the server (docs/reliability.md, Limits)"
    )
    group.add_argument(
        "--max-decoded-mb",
        type=_positive,
        default=512.0,
        metavar="N",
        help="memory one JSON query body may take once decoded, estimated before decoding "
        "(default 512; past it: 413)",
    )
    group.add_argument(
        "--max-json-items",
        type=_count,
        default=10_000_000,
        metavar="N",
        help="values (numbers, strings, lists, objects) in one JSON query body "
        "(default 10000000; past it: 413)",
    )
    group.add_argument(
        "--max-json-depth",
        type=_count,
        default=64,
        metavar="N",
        help="nesting levels in one JSON query body (default 64; past it: 422)",
    )
    group.add_argument(
        "--max-instances",
        type=_count,
        default=100_000,
        metavar="N",
        help="instances in one query (default 100000; past it: 413)",
    )
    group.add_argument(
        "--max-inflight-mb",
        type=_positive,
        default=1024.0,
        metavar="N",
        help="memory all query bodies being received or decoded may take together; others "
        "wait up to 10 s, then get 503 (default 1024)",
    )
    group.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests whose Host is NAME (repeatable; default: loopback names, "
        "the --host address, and on 0.0.0.0 or :: any IP address and this machine's hostname; "
        "'*' answers any Host and lets web pages reach the server through DNS rebinding)",
    )
    group.add_argument(
        "--header-timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="seconds a client has to send a request's line and headers (default 10)",
    )
    group.add_argument(
        "--body-timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help="seconds a request body (or a response the client reads) may stall without a "
        "byte moving (default 30)",
    )
    group.add_argument(
        "--idle-timeout",
        type=_positive,
        default=5.0,
        metavar="S",
        help="seconds a kept-alive connection may wait for its next request (default 5)",
    )
    group.add_argument(
        "--max-connections",
        type=_count,
        default=1000,
        metavar="N",
        help="open connections; past it the one idle or stuck in its headers longest is "
        "closed, or the new one gets 503 when all are busy (default 1000)",
    )


def _at_least_zero(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _uid_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not sep or not first.isdigit() or not last.isdigit():
        raise argparse.ArgumentTypeError(f"give FIRST-LAST, e.g. 1879048192-1879113727, not {text}")
    return int(first), int(last)


def _add_sandbox(parser: Any) -> None:
    """The worker sandbox's options; docs/reliability.md says what each protection does."""
    group = parser.add_argument_group("worker sandbox (model code is untrusted)")
    add = group.add_argument
    add(
        "--sandbox-report", action="store_true", help="print which protections hold here, then exit"
    )
    add(
        "--worker-uids",
        type=_uid_range,
        default=(0x70000000, 0x7000FFFF),
        metavar="FIRST-LAST",
        help="when run as root, each worker gets a uid of its own from this range "
        "(default 1879048192-1879113727)",
    )
    add("--worker-user", dest="removed_worker_user", help=argparse.SUPPRESS)
    add("--worker-network", action="store_true", help="let model code open network connections")
    add(
        "--worker-memory-mb",
        type=_at_least_zero,
        metavar="N",
        help="memory of a worker's whole process tree; past it the worker is replaced "
        "(default: half the machine's memory; 0: no limit)",
    )
    add(
        "--worker-idle-cpu",
        type=_at_least_zero,
        default=5.0,
        metavar="S",
        help="CPU seconds a worker may use within 10 s with no request in flight; past it the "
        "worker is replaced (default 5; 0: never)",
    )
    add(
        "--worker-cpus",
        type=_at_least_zero,
        metavar="N",
        help="CPU quota of a worker in cores, where cgroups allow (default: its threads; 0: none)",
    )
    add("--worker-cpu-seconds", type=int, metavar="S", help="CPU seconds in a worker's life")
    add("--worker-max-files", type=int, default=1024, metavar="N", help="open files (default 1024)")
    add(
        "--worker-max-procs",
        type=_count,
        default=256,
        metavar="N",
        help="processes and threads of a worker (default 256)",
    )
    add(
        "--worker-tmp-mb",
        type=_positive,
        default=256.0,
        metavar="N",
        help="size of a worker's private /tmp and of its /dev/shm (default 256)",
    )
    add(
        "--worker-max-output-mb",
        type=_positive,
        default=64.0,
        metavar="N",
        help="largest answer a worker may send (default 64)",
    )
    add(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="pass this variable to model code (repeatable; by default workers get only locale, "
        "device and Python variables)",
    )
    add(
        "--worker-bind",
        action="append",
        default=[],
        metavar="PATH",
        help="show this host path to workers, read-only (repeatable)",
    )
    add(
        "--no-worker-sandbox",
        action="store_true",
        help="run workers as plain child processes of the server (debugging only)",
    )


def _add_environments(parser: Any) -> None:
    group = parser.add_argument_group(
        "per-model environments",
        "A version that pins packages this server lacks gets its own uv environment, layered "
        "over the server's (torch, NumPy and the runtime are shared, never reinstalled).",
    )
    group.add_argument(
        "--model-envs",
        choices=["on", "off"],
        default="on",
        help="build environments for missing pins (default on; off refuses such uploads with "
        "422 missing_requirements; the embedded server always shares the notebook's)",
    )
    group.add_argument(
        "--package-index",
        metavar="URL",
        help="the package index to build from (default: uv's, PyPI)",
    )
    group.add_argument(
        "--find-links",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder (or URL) of wheels to build from; with no --package-index, the only "
        "source (repeatable)",
    )


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
        "--stream-chunk-timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help="seconds a streaming model (predict_stream) may take for one chunk before its "
        "worker is restarted (default 30)",
    )
    parser.add_argument(
        "--stream-timeout",
        type=_positive,
        default=600.0,
        metavar="S",
        help="seconds a whole stream may last before it is stopped (default 600)",
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
        help="largest query body in MB (default 100; other JSON bodies: 1 MB; past it: 413)",
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
        "--standby",
        type=_spare_count,
        default=None,
        metavar="N",
        help="spare workers kept with torch imported, so a load only imports the model; each "
        "costs about 230 MB (default 1; 2 embedded, where a notebook deploys often)",
    )
    parser.add_argument(
        "--no-standby",
        action="store_true",
        help="keep no spare worker (same as --standby 0: saves memory, slower loads)",
    )
    parser.add_argument(
        "--warm-start",
        type=int,
        default=4,
        metavar="N",
        help="load the default versions of the N most recently deployed models at start, so "
        "the first queries after a restart find them warm; 0 turns it off (default 4)",
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
    _add_limits(parser)
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
        help="at most N replicas of one version per node (overrides --ray-placement)",
    )
    ray.add_argument(
        "--ray-placement",
        choices=["spread", "pack"],
        default="spread",
        help="spread (default): a model's replicas go over the nodes that fit them, as evenly "
        "as their count allows; pack: no limit per node, Ray chooses",
    )
    ray.add_argument(
        "--ray-route",
        choices=["direct", "handle"],
        default="direct",
        help="direct (default): queries go straight to the replicas of fixed-size models; "
        "handle: always through Ray Serve's handle (slower)",
    )
    _add_sandbox(parser)
    _add_environments(parser)
    parser.add_argument(
        "--request-log",
        type=_log_mode,
        metavar="MODE",
        help="what each model's request log keeps unless set per model (easytensor models "
        "log): off, errors, sample:P or all (default off; all on the embedded server)",
    )
    parser.add_argument(
        "--log-redact", action="store_true", help="keep no inputs in the request log"
    )
    parser.add_argument(
        "--log-keep",
        type=int,
        metavar="N",
        help="request log records kept per model (default 10000; 1000 embedded)",
    )
    parser.add_argument(
        "--log-keep-mb",
        type=float,
        metavar="MB",
        help="request log MiB kept per model (default 64; 16 embedded)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default info)",
    )
    parser.set_defaults(func=_run)


def _spare_count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 8:
        raise argparse.ArgumentTypeError(f"must be 0 to 8, not {text}")
    return value


def _standby(args: argparse.Namespace) -> int:
    if args.no_standby:
        return 0
    if args.standby is not None:
        return int(args.standby)
    return 2 if args.embedded else 1


def _log_mode(text: str) -> str:
    from easytensor_jupyter.inference.request_log import parse_mode

    try:
        parse_mode(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip().lower()


def _run(args: argparse.Namespace) -> int:
    if args.removed_worker_user:
        print(
            "easytensor serve: --worker-user was removed: workers no longer share one user; "
            "as root each gets a uid of its own from --worker-uids FIRST-LAST",
            file=sys.stderr,
        )
        return 2
    from easytensor_jupyter.inference.options import ServeOptions
    from easytensor_jupyter.inference.server import run

    options = ServeOptions(
        host=args.host,
        port=args.port,
        store=args.store,
        db=args.db,
        predict_timeout=args.predict_timeout,
        stream_chunk_timeout=args.stream_chunk_timeout,
        stream_timeout=args.stream_timeout,
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
        standby=_standby(args),
        warm_start=max(0, args.warm_start),
        sandbox=not args.no_worker_sandbox,
        worker_uids=args.worker_uids,
        worker_network=args.worker_network,
        worker_memory_mb=args.worker_memory_mb,
        worker_idle_cpu=args.worker_idle_cpu,
        worker_cpus=args.worker_cpus,
        worker_cpu_seconds=args.worker_cpu_seconds,
        worker_max_files=max(16, args.worker_max_files),
        worker_max_procs=args.worker_max_procs,
        worker_tmp_mb=args.worker_tmp_mb,
        worker_max_output_mb=args.worker_max_output_mb,
        worker_env=tuple(args.worker_env),
        worker_bind=tuple(args.worker_bind),
        backend=args.backend,
        ray_address=args.ray_address,
        ray_namespace=args.ray_namespace,
        ray_replica_cpus=args.ray_replica_cpus,
        ray_max_replicas_per_node=args.ray_max_replicas_per_node,
        ray_placement=args.ray_placement,
        ray_route=args.ray_route,
        max_decoded_mb=args.max_decoded_mb,
        max_json_items=args.max_json_items,
        max_json_depth=args.max_json_depth,
        max_instances=args.max_instances,
        max_inflight_mb=args.max_inflight_mb,
        allowed_hosts=tuple(args.allowed_host),
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
        model_envs=args.model_envs == "on" and not args.embedded,
        package_index=args.package_index,
        find_links=tuple(args.find_links),
        request_log=args.request_log or ("all" if args.embedded else "off"),
        log_redact=args.log_redact,
        log_keep=args.log_keep or (1000 if args.embedded else 10_000),
        log_keep_mb=args.log_keep_mb or (16.0 if args.embedded else 64.0),
    )
    if args.sandbox_report:
        return _sandbox_report(options)
    return run(options)


def _sandbox_report(options: Any) -> int:
    from easytensor_jupyter.inference.app import worker_settings
    from easytensor_jupyter.inference.backends.local.protections import describe, report_table
    from easytensor_jupyter.inference.backends.local.sandbox import (
        Sandbox,
        sandbox_options,
        validate,
    )

    values = worker_settings(options)
    problem = validate(values)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    resolved = sandbox_options(values)
    box = Sandbox(resolved) if options.sandbox else None
    try:
        print(report_table(describe(box, resolved)))
    finally:
        if box is not None:
            box.close()
    return 0
