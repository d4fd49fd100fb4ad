"""The systems under test: how each is started, where it answers and which body it takes."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import PY, free_port, running

__all__ = ["Endpoint", "easytensor_server", "floor", "litserve", "plain_fastapi"]

_UVICORN = ["-m", "uvicorn", "--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools"]
_QUIET = ["--log-level", "warning", "--no-access-log"]


@dataclass(frozen=True)
class Endpoint:
    url: str
    auth: str = ""
    # The launched process (its children included, the whole system being measured).
    pid: int = 0


@contextlib.contextmanager
def floor(logs: Path) -> Iterator[Endpoint]:
    port = free_port()
    command = [PY, *_UVICORN, "--port", str(port), *_QUIET, "benchmarks.apps.floor:app"]
    with running(command, f"http://127.0.0.1:{port}/", logs / "floor.log") as proc:
        yield Endpoint(f"http://127.0.0.1:{port}/predict", pid=proc.pid)


@contextlib.contextmanager
def plain_fastapi(logs: Path, bundle: Path) -> Iterator[Endpoint]:
    port = free_port()
    command = [PY, *_UVICORN, "--port", str(port), *_QUIET, "benchmarks.apps.plain_fastapi:app"]
    env = {"BENCH_BUNDLE": str(bundle), "OMP_NUM_THREADS": "1"}
    with running(command, f"http://127.0.0.1:{port}/docs", logs / "fastapi.log", env):
        yield Endpoint(f"http://127.0.0.1:{port}/predict")


@contextlib.contextmanager
def litserve(logs: Path, bundle: Path, batch: int, wait_ms: float) -> Iterator[Endpoint]:
    port = free_port()
    command = [PY, "-m", "benchmarks.apps.litserve_app", str(port)]
    env = {
        "BENCH_BUNDLE": str(bundle),
        "BENCH_BATCH": str(batch),
        "BENCH_BATCH_WAIT_S": str(wait_ms / 1000),
        "OMP_NUM_THREADS": "1",
        "LITSERVE_DISABLE_TELEMETRY": "1",
    }
    with running(command, f"http://127.0.0.1:{port}/health", logs / "litserve.log", env) as proc:
        yield Endpoint(f"http://127.0.0.1:{port}/predict", pid=proc.pid)


@dataclass(frozen=True)
class Server:
    url: str
    admin_key: str
    pid: int


@contextlib.contextmanager
def easytensor_server(
    logs: Path,
    home: Path,
    workers: int = 1,
    max_body_mb: float = 100.0,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 120.0,
) -> Iterator[Server]:
    """``easytensor serve`` with its own home and store, on a free port.

    ``extra_args`` picks another backend (the Ray rows); joining a cluster and starting Ray
    Serve's controller is what ``ready_timeout`` has to leave room for.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    key = "bench-" + secrets.token_urlsafe(16)
    command = [
        PY,
        "-m",
        "easytensor_jupyter.cli",
        "serve",
        "--port",
        str(port),
        "--store",
        str(home / "store"),
        "--log-level",
        "warning",
        "--max-body-mb",
        str(max_body_mb),
        "--workers",
        str(workers),
        *extra_args,
    ]
    env = {**(extra_env or {}), "EASYTENSOR_HOME": str(home), "EASYTENSOR_API_KEY": key}
    # The server must not inherit a URL or key from whoever runs the benchmark.
    for var in ("EASYTENSOR_URL",):
        os.environ.pop(var, None)
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/health", logs / "easytensor.log", env, ready_timeout) as proc:
        yield Server(url, key, proc.pid)


@contextlib.contextmanager
def torchserve(
    logs: Path, work: Path, bundle: Path, batch: int, wait_ms: float
) -> Iterator[Endpoint]:
    """TorchServe (Java frontend + Python worker) with the bundle archived into a .mar."""
    import subprocess
    import time

    from benchmarks.procs import ROOT, http_get

    store = work / f"ts-store-{bundle.name}"
    store.mkdir(parents=True, exist_ok=True)
    extra = ",".join(str(bundle / n) for n in ("model.py", "weights.safetensors", "manifest.json"))
    subprocess.run(
        [
            str(Path(PY).parent / "torch-model-archiver"),
            "--model-name",
            "m",
            "--version",
            "1.0",
            "--handler",
            str(ROOT / "benchmarks" / "apps" / "torchserve_handler.py"),
            "--extra-files",
            extra,
            "--export-path",
            str(store),
            "--force",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    ports = [free_port() for _ in range(3)]
    models = {
        "m": {
            "1.0": {
                "defaultVersion": True,
                "marName": "m.mar",
                "minWorkers": 1,
                "maxWorkers": 1,
                "batchSize": batch,
                "maxBatchDelay": int(wait_ms),
                "responseTimeout": 120,
            }
        }
    }
    import json

    config = work / f"ts-{bundle.name}.properties"
    config.write_text(
        f"inference_address=http://127.0.0.1:{ports[0]}\n"
        f"management_address=http://127.0.0.1:{ports[1]}\n"
        f"metrics_address=http://127.0.0.1:{ports[2]}\n"
        f"model_store={store}\nload_models=m.mar\ndisable_token_authorization=true\n"
        "enable_metrics_api=false\n"
        f"models={json.dumps(models)}\n"
    )
    command = [
        str(Path(PY).parent / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--ts-config",
        str(config),
        "--model-store",
        str(store),
        "--disable-token-auth",
    ]
    env = {
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(PY).parent}:{os.environ.get('PATH', '')}",
        "LOG_LOCATION": str(logs),
        "METRICS_LOCATION": str(logs),
    }
    base = f"http://127.0.0.1:{ports[0]}"
    with running(command, f"{base}/ping", logs / "torchserve.log", env, timeout=180) as proc:
        deadline = time.monotonic() + 120
        while http_get(f"http://127.0.0.1:{ports[1]}/models/m", 2.0) != 200:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("TorchServe did not register the model")
            time.sleep(0.5)
        yield Endpoint(f"{base}/predictions/m")
