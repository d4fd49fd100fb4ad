"""How long a worker takes to start, in its sandbox and without one; prints a table.

Two figures, medians of several runs:

* cold start: ``Worker.start`` to the worker's "ready" for a tiny model (interpreter, torch
  import, model load), the way an upload's load check or a query after a crash starts one
  when no standby worker is warm;
* jail only: ``python -S -c pass`` run bare, and run in the jail a worker gets (cgroup join,
  bubblewrap, ``setpriv``), which is what the sandbox adds to every start.

Run: ``.venv/bin/python benchmarks/worker_start.py [--runs N]`` (as root, for the uid and cgroup
part of the jail; as a normal user it measures the user-namespace jail).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bundles import make_bundle

from easytensor_jupyter.inference.backends.base import WorkerSpec
from easytensor_jupyter.inference.backends.local.sandbox import (
    Sandbox,
    SandboxOptions,
)
from easytensor_jupyter.inference.backends.local.workdir import (
    new_bundle_dir,
    plain_env,
    run_folder,
)
from easytensor_jupyter.inference.backends.local.worker import Worker


async def _cold(spec: WorkerSpec, sandbox: Sandbox | None) -> float:
    worker = Worker(
        spec, device="cpu", threads=1, max_pending=8, on_exit=lambda *_: None, sandbox=sandbox
    )
    started = time.perf_counter()
    await worker.start()
    await worker.wait_ready(120)
    elapsed = time.perf_counter() - started
    await worker.stop()
    return elapsed


def _spawn(command: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="easytensor-bench-"))
    bundle = make_bundle(folder / "tiny", name="tiny")
    for path in bundle.files.values():
        path.chmod(0o444)
    spec = WorkerSpec("tiny", 1, dict(bundle.files), bundle.manifest.to_json_bytes())
    sandbox = Sandbox(SandboxOptions(memory_mb=1024, cpus=1.0))
    rows: list[tuple[str, float, float]] = []
    try:
        for label, box in (("cold start, sandboxed", sandbox), ("cold start, no sandbox", None)):
            times = [asyncio.run(_cold(spec, box)) for _ in range(args.runs)]
            rows.append((label, statistics.median(times), min(times)))
        bare = [sys.executable, "-S", "-c", "pass"]
        directory = new_bundle_dir(None)
        jail = sandbox.jail(directory, bare, "bench")
        for label, command, env, cwd in (
            ("python -S -c pass, bare", bare, plain_env(1), str(directory)),
            ("python -S -c pass, in a worker's jail", jail.command, jail.env, jail.cwd),
        ):
            times = [_spawn(command, env, cwd) for _ in range(max(30, args.runs))]
            rows.append((label, statistics.median(times), min(times)))
        sandbox.release(jail)
    finally:
        sandbox.close()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(run_folder(), ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  median ms   min ms")
    for label, median, low in rows:
        print(f"{label:<{width}}  {median * 1000:9.1f}  {low * 1000:7.1f}")
    print(f"sandbox: bubblewrap {'on' if sandbox.confined else 'off: ' + str(sandbox.why_not)}")


if __name__ == "__main__":
    main()
