"""Load generation: wrk with a Lua script for POST bodies, always bounded in time."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LoadResult", "in_process", "wrk"]

_LUA = Path(__file__).resolve().parent / "wrk_post.lua"


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def wrk(
    url: str,
    body_file: Path,
    connections: int,
    seconds: float,
    auth: str = "",
    content_type: str = "application/json",
) -> LoadResult:
    """One wrk run: one thread (the client must not eat the server's second core)."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(_LUA),
        url,
        "--",
        str(body_file),
        content_type,
        auth,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary: {done.stdout}\n{done.stderr}")
    data: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    errors = sum(data[k] for k in ("non2xx", "connect", "read", "write", "timeout"))
    return LoadResult(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        errors=errors,
    )


def in_process(call: Callable[[], Any], seconds: float) -> LoadResult:
    """The compute limit: call ``predict_single`` back to back on one thread."""
    for _ in range(20):
        call()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while (now := time.perf_counter()) < end:
        call()
        times.append(time.perf_counter() - now)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return LoadResult(
        rps=len(times) / sum(times),
        p50_ms=statistics.median(times) * 1000,
        p99_ms=p99 * 1000,
        requests=len(times),
        errors=0,
    )
