"""Streaming: time to first chunk and chunks per second, ``easytensor serve`` against LitServe
streaming the same model's ``predict_stream`` from the same bundle, in one run.

    python -m benchmarks.streaming [--streams 30] [--concurrency 8] [--chunks 64]

The model is a small character-level language model (an MLP over the last eight characters)
that yields one character per step, ``--chunks`` of them a stream, so each chunk costs the
model about as much as a small generative step does. Both systems are asked for one JSON line a
chunk (EasyTensor's ``Accept: application/x-ndjson``). Measured from the client: time to first
chunk (p50/p95 over ``--streams`` streams, one at a time), chunks per second within one
stream, and chunks per second over ``--concurrency`` concurrent streams (three bursts of twice
that many streams). Both systems run at once and take turns, stream by stream and burst by
burst, so the machine's changing load falls on both alike; on a shared machine compare the
ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import torch
from safetensors.torch import save_model

from benchmarks.procs import PY, ROOT, free_port, running
from benchmarks.systems import Endpoint, easytensor_server
from easytensor_jupyter.bundle import MODEL_FILE, WEIGHTS_FILE, Manifest, file_entry
from easytensor_jupyter.client import Client

__all__ = ["main"]

SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    CHARS = " abcdefghijklmnopqrstuvwxyz."
    CONTEXT = 8


    class CharStreamer(nn.Module):
        def __init__(self, chunks=64, hidden=128):
            super().__init__()
            self.chunks = chunks
            self.embed = nn.Embedding(len(CHARS), 12)
            self.net = nn.Sequential(
                nn.Linear(CONTEXT * 12, hidden), nn.Tanh(), nn.Linear(hidden, len(CHARS))
            )

        def predict_stream(self, prompt):
            ids = [0] * CONTEXT + [CHARS.index(c) for c in prompt if c in CHARS]
            for _ in range(self.chunks):
                window = torch.tensor([ids[-CONTEXT:]])
                nxt = int(self.net(self.embed(window).flatten(1))[0].argmax())
                ids.append(nxt)
                yield CHARS[nxt]

        def predict_single(self, prompt):
            return "".join(self.predict_stream(prompt))
    """
)
PROMPT = "the cat sat on the mat"


def build_bundle(directory: Path, chunks: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_text(SOURCE, encoding="utf-8")
    namespace: dict[str, Any] = {}
    exec(compile(SOURCE, "model.py", "exec"), namespace)
    torch.manual_seed(0)
    save_model(namespace["CharStreamer"](chunks=chunks), str(directory / WEIGHTS_FILE))
    files = {name: file_entry(directory / name) for name in (MODEL_FILE, WEIGHTS_FILE)}
    manifest = Manifest(
        name="streaming char model",
        class_name="CharStreamer",
        init_kwargs={"chunks": chunks},
        files=files,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        streaming=True,
        provenance={"benchmark": True},
    )
    (directory / "manifest.json").write_bytes(manifest.to_json_bytes())
    return directory


def one_stream(endpoint: Endpoint, session: requests.Session) -> tuple[float, float, str]:
    """(seconds to the first chunk, chunks per second after it, the joined text)."""
    headers = {"Accept": "application/x-ndjson"}
    if endpoint.auth:
        headers["Authorization"] = endpoint.auth
    started = time.perf_counter()
    first = last = 0.0
    chunks: list[str] = []
    with session.post(
        endpoint.url, json={"instances": [PROMPT]}, headers=headers, stream=True, timeout=60
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines(chunk_size=None):
            if not line:
                continue
            value = json.loads(line)
            if "chunk" not in value:
                continue
            last = time.perf_counter()
            if not chunks:
                first = last
            chunks.append(value["chunk"])
    rate = (len(chunks) - 1) / (last - first) if last > first else float("nan")
    return first - started, rate, "".join(chunks)


def _concurrent(endpoint: Endpoint, concurrency: int) -> tuple[int, float]:
    sessions = [requests.Session() for _ in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(lambda s: one_stream(endpoint, s), sessions * 2))
    return sum(len(t) for _, _, t in done), time.perf_counter() - started


def measure(
    endpoints: dict[str, Endpoint], streams: int, concurrency: int, chunks: int
) -> dict[str, dict[str, float]]:
    """Every system in turn, stream by stream (and burst by burst for the concurrent figure),
    so that the machine's changing load falls on all of them alike."""
    sessions = {name: requests.Session() for name in endpoints}
    for name, endpoint in endpoints.items():
        for _ in range(3):
            one_stream(endpoint, sessions[name])
    firsts: dict[str, list[float]] = {name: [] for name in endpoints}
    rates: dict[str, list[float]] = {name: [] for name in endpoints}
    for _ in range(streams):
        for name, endpoint in endpoints.items():
            first, rate, text = one_stream(endpoint, sessions[name])
            assert len(text) == chunks, text
            firsts[name].append(first * 1000)
            rates[name].append(rate)
    sent = dict.fromkeys(endpoints, 0)
    wall = dict.fromkeys(endpoints, 0.0)
    for _ in range(3):
        for name, endpoint in endpoints.items():
            count, seconds = _concurrent(endpoint, concurrency)
            sent[name] += count
            wall[name] += seconds
    rows = {}
    for name in endpoints:
        ordered = sorted(firsts[name])
        rows[name] = {
            "ttfc_p50_ms": statistics.median(ordered),
            "ttfc_p95_ms": ordered[int(0.95 * (len(ordered) - 1))],
            "chunks_per_s_one": statistics.median(rates[name]),
            "chunks_per_s_concurrent": sent[name] / wall[name],
        }
    return rows


@contextlib.contextmanager
def litserve_stream(logs: Path, bundle: Path) -> Iterator[Endpoint]:
    port = free_port()
    command = [PY, "-m", "benchmarks.apps.litserve_stream_app", str(port)]
    env = {"BENCH_BUNDLE": str(bundle), "OMP_NUM_THREADS": "1", "LITSERVE_DISABLE_TELEMETRY": "1"}
    # LitServe may sit on PYTHONPATH rather than in the environment; keep it there.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with running(command, f"http://127.0.0.1:{port}/health", logs / "litserve-stream.log", env):
        yield Endpoint(f"http://127.0.0.1:{port}/predict")


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = [
        "| system | first chunk p50 | first chunk p95 | chunks/s, one stream | "
        "chunks/s, concurrent |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['ttfc_p50_ms']:.2f} ms | {row['ttfc_p95_ms']:.2f} ms | "
            f"{row['chunks_per_s_one']:,.0f} | {row['chunks_per_s_concurrent']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--skip", action="append", default=[], choices=["litserve"])
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="easytensor-stream-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        (work / "logs").mkdir()
        bundle = build_bundle(work / "bundle", args.chunks)
        server = stack.enter_context(easytensor_server(work / "logs", work / "home"))
        client = Client(server.url, server.admin_key, timeout=300)
        up = client.upload_bundle(bundle)
        endpoints = {
            "easytensor serve": Endpoint(client.endpoint(up.id), f"Bearer {server.admin_key}")
        }
        if "litserve" not in args.skip:
            endpoints["LitServe (stream=True)"] = stack.enter_context(
                litserve_stream(work / "logs", bundle)
            )
        rows = measure(endpoints, args.streams, args.concurrency, args.chunks)
    print(table(rows))
    if len(rows) == 2:
        ours, theirs = rows.values()
        print(
            f"\nfirst chunk p50: {theirs['ttfc_p50_ms'] / ours['ttfc_p50_ms']:.2f}x faster; "
            f"chunks/s one stream {ours['chunks_per_s_one'] / theirs['chunks_per_s_one']:.2f}x, "
            f"concurrent {ours['chunks_per_s_concurrent'] / theirs['chunks_per_s_concurrent']:.2f}x"
            " (EasyTensor / LitServe)"
        )


if __name__ == "__main__":
    main()
