"""Every server option in one place: the CLI fills it, the app and both backends read it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from easytensor_jupyter import config

__all__ = ["ServeOptions", "default_threads"]


def default_threads() -> int:
    """Threads per worker: half the machine's cores, one to four, so two workers fit side by side."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = config.DEFAULT_PORT
    store: Path | None = None
    db: str | None = None
    predict_timeout: float = 30.0
    # Streams (predict_stream): the longest wait for one chunk, and for the whole stream.
    stream_chunk_timeout: float = 30.0
    stream_timeout: float = 600.0
    load_timeout: float = 300.0
    max_body_mb: float = 100.0
    max_upload_mb: float = 65536.0
    idle_unload: float = 900.0
    embedded: bool = False
    owner_pid: int | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    log_level: str = "info"
    device: str = "cpu"
    max_workers: int = 8
    workers_per_model: int = 1
    # Spare workers with torch imported (0: none); the embedded server keeps two.
    standby: int = 1
    # Default versions loaded when the server starts, most recently deployed first.
    warm_start: int = 4
    sandbox: bool = True
    worker_uids: tuple[int, int] = (0x70000000, 0x7000FFFF)
    worker_network: bool = False
    # None: half the machine's memory; 0: no limit.
    worker_memory_mb: float | None = None
    worker_idle_cpu: float = 5.0
    # None: the worker's --threads cores; 0: no quota.
    worker_cpus: float | None = None
    worker_cpu_seconds: int | None = None
    worker_max_files: int = 1024
    worker_max_procs: int = 256
    worker_tmp_mb: float = 256.0
    worker_max_output_mb: float = 64.0
    worker_env: tuple[str, ...] = field(default_factory=tuple)
    worker_bind: tuple[str, ...] = field(default_factory=tuple)
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_namespace: str = "easytensor"
    ray_replica_cpus: float = 1.0
    ray_max_replicas_per_node: int | None = None
    ray_placement: Literal["spread", "pack"] = "spread"
    ray_route: Literal["direct", "handle"] = "direct"
    threads: int = field(default_factory=default_threads)
    # Bounds on what clients may cost the server (docs/reliability.md, "Limits").
    max_decoded_mb: float = 512.0
    max_json_items: int = 10_000_000
    max_json_depth: int = 64
    max_instances: int = 100_000
    max_inflight_mb: float = 1024.0
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 5.0
    max_connections: int = 1000
    # Per-model environments (docs/environments in the README): built with uv when a version
    # pins packages the server lacks.
    model_envs: bool = True
    package_index: str | None = None
    find_links: tuple[str, ...] = field(default_factory=tuple)
    # The request log: the setting of models without their own (off, errors, sample:P, all),
    # what a record keeps of the input, and how much each model's log holds.
    request_log: str = "off"
    log_redact: bool = False
    log_keep: int = 10_000
    log_keep_mb: float = 64.0
    log_input_kb: float = 64.0
    log_blob_kb: float = 1024.0

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * (1 << 20))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))
