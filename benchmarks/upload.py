"""A 1 GiB ``state_dict`` upload next to ``cp`` + ``sync`` and sha256 of the same file.

    .venv/bin/python -m benchmarks.run --only upload   # -> results/upload.md and .json

The three take turns, round after round, on one running server (its standby worker ready, as on
a server that has served anything): this VM's write speed moves a lot from one minute to the
next, so each round's ratio compares neighbours, and the table gives the medians.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.models import MODELS, build_bundle
from benchmarks.procs import PY, ROOT, rss_bytes
from benchmarks.systems import easytensor_server

__all__ = ["ROUNDS", "upload_cost", "upload_only"]

ROUNDS = 3

# The client's peak RSS is sampled, not read from ru_maxrss: Linux keeps that across exec, so
# it would report the benchmark's own memory at the fork.
_CLIENT_UPLOAD = """
import os, sys, threading, time
from pathlib import Path
from easytensor_jupyter.client import Client
peak = [0]
def sample():
    while True:
        with open("/proc/self/statm") as fh:
            peak[0] = max(peak[0], int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
        time.sleep(0.01)
threading.Thread(target=sample, daemon=True).start()
client = Client(sys.argv[1], sys.argv[2], timeout=900)
started = time.perf_counter()
up = client.upload_bundle(Path(sys.argv[3]))
elapsed = time.perf_counter() - started
print(elapsed, peak[0], up.id)
"""


def _cp_sync(source: Path, copy: Path) -> tuple[float, float]:
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(copy)], check=True)
    cp_s = time.perf_counter() - started
    subprocess.run(["sync", str(copy)], check=True)
    total = time.perf_counter() - started
    copy.unlink()
    return cp_s, total


def _sha256_s(path: Path) -> float:
    """What the server cannot skip: every received byte is hashed to check its address."""
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return time.perf_counter() - started


def _upload_once(url: str, key: str, bundle: Path, pid: int) -> dict[str, Any]:
    base = rss_bytes(pid)
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        done = subprocess.run(
            [PY, "-c", _CLIENT_UPLOAD, url, key, str(bundle)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=900,
            check=True,
        )
    finally:
        stop.set()
        sampler.join()
    upload_s, client_peak, model_id = done.stdout.split()
    return {
        "upload_s": float(upload_s),
        "server_rss_before": base,
        "server_rss_peak": peak[0],
        "client_peak_rss": int(client_peak),
        "model_id": model_id,
    }


def upload_cost(work: Path, rounds: int = ROUNDS) -> dict[str, Any]:
    """Per-round figures and their medians (the keys the main report reads)."""
    from easytensor_jupyter.client import Client

    bundle = build_bundle(work / "big", "big", "Big", None)
    weights = bundle / "weights.safetensors"
    subprocess.run(["sync"], check=True)
    measured: list[dict[str, Any]] = []
    with easytensor_server(work / "logs", work / "home-big", max_body_mb=4096) as server:
        client = Client(server.url, server.admin_key, timeout=300)
        warm = build_bundle(work / "big-warm", "warm", MODELS["tiny"].class_name, None)
        client.upload_bundle(warm)
        time.sleep(3)
        for round_no in range(rounds):
            cp_s, cp_sync_s = _cp_sync(weights, work / "big-copy.safetensors")
            sha256_s = _sha256_s(weights)
            row = _upload_once(server.url, server.admin_key, bundle, server.pid)
            # Deleting the model collects its blob, so the next round sends every byte again.
            client.delete_model(row.pop("model_id"))
            row.update(cp_s=cp_s, cp_sync_s=cp_sync_s, sha256_s=sha256_s)
            row["ratio"] = row["upload_s"] / cp_sync_s
            measured.append(row)
            print(
                f"  round {round_no + 1}: upload {row['upload_s']:.2f} s, cp + sync "
                f"{cp_sync_s:.2f} s, sha256 {sha256_s:.2f} s -> {row['ratio']:.2f}x",
                flush=True,
            )
    summary: dict[str, Any] = {
        key: statistics.median(r[key] for r in measured)
        for key in ("cp_s", "cp_sync_s", "sha256_s", "upload_s", "ratio")
    }
    summary["hash_ratio"] = statistics.median(r["sha256_s"] / r["cp_sync_s"] for r in measured)
    summary["server_rss_before"] = min(r["server_rss_before"] for r in measured)
    summary["server_rss_peak"] = max(r["server_rss_peak"] for r in measured)
    summary["client_peak_rss"] = max(r["client_peak_rss"] for r in measured)
    summary["bytes"] = weights.stat().st_size
    summary["rounds"] = measured
    return summary


def markdown(result: dict[str, Any]) -> str:
    mb = 2**20
    lines = [
        f"Upload of a {result['bytes'] / 2**30:.2f} GiB state_dict, {len(result['rounds'])} "
        "rounds (each a cp + sync, a sha256 and an upload of the same file, in that order).",
        "",
        "| round | upload s | cp s | cp + sync s | sha256 s | upload / (cp + sync) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(result["rounds"], 1):
        lines.append(
            f"| {i} | {r['upload_s']:.2f} | {r['cp_s']:.2f} | {r['cp_sync_s']:.2f} | "
            f"{r['sha256_s']:.2f} | {r['ratio']:.2f}x |"
        )
    lines += [
        f"| median | {result['upload_s']:.2f} | {result['cp_s']:.2f} | {result['cp_sync_s']:.2f} "
        f"| {result['sha256_s']:.2f} | {result['ratio']:.2f}x |",
        "",
        f"sha256 alone against cp + sync: {result['hash_ratio']:.2f}x (median). Server RSS "
        f"{result['server_rss_before'] / mb:.0f} -> {result['server_rss_peak'] / mb:.0f} MB peak; "
        f"client peak RSS {result['client_peak_rss'] / mb:.0f} MB.",
    ]
    return "\n".join(lines) + "\n"


def upload_only(work: Path, out: Path, rounds: int = ROUNDS) -> int:
    result = upload_cost(work, rounds)
    (out / "upload.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / "upload.md").write_text(table)
    print(table)
    return 0
