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
    standby: bool = True
    sandbox: bool = True
    worker_user: str | None = "nobody"
    worker_network: bool = False
    worker_memory_mb: float | None = None
    worker_cpu_seconds: int | None = None
    worker_max_files: int = 1024
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_namespace: str = "easytensor"
    ray_replica_cpus: float = 1.0
    ray_max_replicas_per_node: int | None = None
    threads: int = field(default_factory=default_threads)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * (1 << 20))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))
