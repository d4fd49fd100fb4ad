"""A throwaway Ray cluster on loopback for the benchmark's Ray rows.

The cluster runs inside a helper process (``python -m benchmarks.raycluster``) that gets a
session of its own. The GCS, both raylets and Ray's other daemons stay in that process group,
so the benchmark can always finish the job with one ``killpg`` even if the helper's own orderly
shutdown hangs; the actor processes (Serve's controller, the replicas) get groups of their own
from Ray but exit when their raylet goes, and a replica's worker process dies with its replica.
The benchmark process itself never becomes a Ray process group leader (Ray's reaper, started
for an in-process cluster, would make it one). The helper also watches its stdin: if the
benchmark dies without a word, the pipe closes and the cluster goes with it.

Nothing here may talk to an address other than 127.0.0.1. On Linux Ray asks the routing table
which local address reaches the outside world and advertises that one; with its "clusters"
switch off (what macOS and Windows get by default) it settles for the loopback address instead.
``LOOPBACK_ENV`` flips that switch, and the benchmark gives the same variables to the
EasyTensor server that joins the cluster as a driver.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.procs import PY, ROOT, free_port

__all__ = ["LOOPBACK_ENV", "BenchCluster", "loopback_cluster", "ray_missing"]

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}

_READY = "BENCH_RAY_CLUSTER_READY"


def ray_missing() -> str | None:
    """A sentence for the person running the benchmark when the Ray rows cannot run here."""
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install -e '.[ray]'): skipping the Ray rows"
    if importlib.util.find_spec("ray.serve") is None:
        return "Ray Serve is not installed (pip install 'ray[serve]'): skipping the Ray rows"
    return None


@dataclass(frozen=True)
class BenchCluster:
    address: str
    pid: int
    """The helper process: every Ray daemon of the cluster runs below it."""


@contextlib.contextmanager
def loopback_cluster(
    logs: Path, nodes: int = 2, cpus: int = 2, timeout: float = 240.0
) -> Iterator[BenchCluster]:
    """Yield the GCS address of ``nodes`` local raylets with ``cpus`` CPUs each in Ray's books.

    The CPU counts are bookkeeping only: every node shares the same real cores.
    """
    # A short root of our own: Ray puts Unix sockets under it (107-byte path limit), and the
    # session logs of this run can be deleted afterwards without touching anybody's /tmp/ray.
    temp = Path(tempfile.mkdtemp(prefix="etb-ray-", dir="/tmp"))
    log = logs / "raycluster.log"
    start_at = log.stat().st_size if log.exists() else 0
    env = {**os.environ, **LOOPBACK_ENV, "PYTHONPATH": str(ROOT)}
    command = [PY, "-m", "benchmarks.raycluster", str(nodes), str(cpus), str(temp)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield BenchCluster(_wait_ready(proc, log, start_at, timeout), proc.pid)
    finally:
        _stop_cluster(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, start_at: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as f:
            f.seek(start_at)
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            if line.startswith(_READY + " "):
                return line.split()[1]
        if proc.poll() is not None:
            raise RuntimeError(f"the Ray cluster helper exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray cluster was not up in {timeout:g} s; see {log}")
        time.sleep(0.2)


def _stop_cluster(proc: subprocess.Popen[bytes]) -> None:
    """Ask the helper first (closing its stdin), so that Ray shuts its nodes down in order;
    then kill whatever is left in its process group, orderly or not."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _start_nodes(cluster_class: Any, node: dict[str, Any], nodes: int, attempts: int = 3) -> Any:
    """Start the head and the other nodes; on a busy machine a raylet may give up waiting for
    its dashboard agent (15 s), so a failed start is ended and tried again."""
    import psutil  # type: ignore[import-untyped]

    for attempt in range(1, attempts + 1):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        cluster = None
        try:
            # shutdown_at_exit=False: no atexit hooks and no reaper; the caller's finally and
            # the benchmark's killpg already cover every way out.
            cluster = cluster_class(
                initialize_head=True,
                # The head's dashboard process starts anyway; a port of its own keeps it from
                # colliding with another cluster on this machine (Ray's default is a fixed 8265).
                head_node_args={**node, "include_dashboard": False, "dashboard_port": free_port()},
                shutdown_at_exit=False,
            )
            for _ in range(nodes - 1):
                cluster.add_node(**node)
            cluster.wait_for_nodes()
            return cluster
        except Exception as exc:
            print(f"starting the cluster failed (attempt {attempt}): {exc}", flush=True)
            new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
            for proc in new:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(new, timeout=10)
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _run_helper(nodes: int, cpus: int, temp_dir: str) -> int:
    """The helper's side: start the nodes, say where the head is, wait, shut down."""
    os.environ.update(LOOPBACK_ENV)
    from ray.cluster_utils import Cluster

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    def watch_stdin() -> None:
        # EOF arrives when the benchmark closes the pipe or dies.
        while sys.stdin.buffer.read(4096):
            pass
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=watch_stdin, daemon=True).start()
    node: dict[str, Any] = {"num_cpus": cpus, "node_ip_address": "127.0.0.1", "temp_dir": temp_dir}
    cluster = _start_nodes(Cluster, node, nodes)
    try:
        print(f"{_READY} {cluster.address}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(_run_helper(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
