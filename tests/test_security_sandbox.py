"""The worker sandbox, tested from inside: a real model whose code tries the forbidden thing.

``PROBE_SOURCE``'s ``predict_single`` takes one action (read a file, list a folder, connect,
report its ids and limits, open files until refused, burn CPU) and returns what happened, so
each denial is checked where it matters: in untrusted code running in a real worker. Each
denial has a control (the same probe on something allowed) so a probe that always fails could
not make the test pass.
"""

from __future__ import annotations

import contextlib
import os
import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from bundles import Bundle
from servers import RunningServer

__all__ = ["PROBE_SOURCE", "probe"]

PROBE_SOURCE = textwrap.dedent(
    '''
    """Untrusted model code that tries things and says what happened."""
    import errno
    import glob
    import os
    import resource
    import socket
    import time

    import torch
    from torch import nn

    _LEAK = []


    def _attempt(action):
        try:
            return {"ok": True, "value": action()}
        except OSError as exc:
            return {"ok": False, "error": errno.errorcode.get(exc.errno, str(exc))}


    def _open_many():
        handles = []
        try:
            while len(handles) < 100000:
                handles.append(open(os.devnull))
        except OSError as exc:
            return {"opened": len(handles), "error": errno.errorcode.get(exc.errno)}
        finally:
            for fh in handles:
                fh.close()
        return {"opened": len(handles), "error": None}


    def _leak(mb):
        # Stops at 2 GB, so that a missing memory limit fails the test instead of the machine.
        while len(_LEAK) * mb < 2048:
            _LEAK.append(bytearray(b"x" * (mb << 20)))
            time.sleep(0.01)
        return {"leaked_mb": len(_LEAK) * mb}


    def _spin():
        while True:
            pass


    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def predict_single(self, x):
            kind, arg = x["do"], x.get("arg")
            if kind == "read":
                return _attempt(lambda: len(open(arg, "rb").read(64)))
            if kind == "list":
                return _attempt(lambda: sorted(os.listdir(arg)))
            if kind == "glob":
                return sorted(glob.glob(arg))
            if kind == "connect":
                return _attempt(lambda: socket.create_connection(tuple(arg), timeout=3).close())
            if kind == "ids":
                return {
                    "uid": os.getuid(),
                    "gid": os.getgid(),
                    "cwd": os.getcwd(),
                    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                    "core": resource.getrlimit(resource.RLIMIT_CORE)[1],
                    "cpu": resource.getrlimit(resource.RLIMIT_CPU)[1],
                }
            if kind == "open_many":
                return _open_many()
            if kind == "leak":
                return _leak(int(arg))
            if kind == "spin":
                return _spin()
            return {"echo": x}
    '''
)

ROOT = os.geteuid() == 0


def probe(server: RunningServer, model_id: str, token: str, do: str, arg: Any = None) -> Any:
    response = server.predict(model_id, [{"do": do, "arg": arg}], token=token)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def _upload(server: RunningServer, bundle: Bundle) -> dict[str, Any]:
    response = server.upload(bundle)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _namespaces_refused(server: RunningServer) -> bool:
    return "sandbox: no mount/network namespace" in server.log()


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server with default options, a probe model and a second, ordinary model."""
    from bundles import make_bundle
    from servers import start_server

    root = tmp_path_factory.mktemp("sandbox")
    running = start_server(root / "home")
    try:
        probe_model = _upload(
            running,
            make_bundle(
                root / "probe",
                name="probe",
                source=PROBE_SOURCE,
                class_name="Probe",
                sample={"do": "echo"},
            ),
        )
        other = _upload(running, make_bundle(root / "other", name="other"))
        assert running.predict(other["id"], ["warm"]).status_code == 200
        yield {"server": running, "probe": probe_model, "other": other}
    finally:
        running.stop()


def _worker_dir_of(server: RunningServer, model_pid_filter: Callable[[Path], bool]) -> Path:
    for pid in server.worker_pids():
        with contextlib.suppress(OSError):
            cwd = Path(f"/proc/{pid}/cwd").readlink()
            if model_pid_filter(cwd):
                return cwd
    raise AssertionError("no worker folder found")


def test_worker_cannot_read_the_admin_key_or_the_store(sandboxed: dict[str, Any]) -> None:
    server: RunningServer = sandboxed["server"]
    model_id, token = sandboxed["probe"]["id"], sandboxed["probe"]["query_token"]
    if _namespaces_refused(server) and not ROOT:
        pytest.skip("this platform allows no namespaces to an unprivileged server")
    own = probe(server, model_id, token, "read", "model.py")
    assert own["ok"] and own["value"] > 0, own
    key_path = server.home / "admin_key"
    db_path = server.store / "easytensor.sqlite3"
    assert key_path.is_file() and db_path.is_file()
    assert (key_path.stat().st_mode & 0o777) == 0o600
    for forbidden in (key_path, db_path, server.store / "blobs"):
        seen = probe(server, model_id, token, "read", str(forbidden))
        assert not seen["ok"], f"model code read {forbidden}: {seen}"
    listed = probe(server, model_id, token, "list", str(server.store))
    assert not listed["ok"] or listed["value"] == [], listed


def test_worker_cannot_see_another_models_files(sandboxed: dict[str, Any]) -> None:
    server: RunningServer = sandboxed["server"]
    model_id, token = sandboxed["probe"]["id"], sandboxed["probe"]["query_token"]
    own_dir = Path(probe(server, model_id, token, "ids")["cwd"])
    other_dir = _worker_dir_of(server, lambda cwd: cwd != own_dir and (cwd / "model.py").exists())
    assert "Tiny" in (other_dir / "model.py").read_text()
    assert not probe(server, model_id, token, "read", str(other_dir / "model.py"))["ok"]
    assert not probe(server, model_id, token, "list", str(other_dir))["ok"]
    pattern = str(own_dir.parent / "easytensor-worker-*")
    assert probe(server, model_id, token, "glob", pattern) == [str(own_dir)]


def test_worker_cannot_open_a_network_connection(sandboxed: dict[str, Any]) -> None:
    server: RunningServer = sandboxed["server"]
    model_id, token = sandboxed["probe"]["id"], sandboxed["probe"]["query_token"]
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass
    seen = probe(server, model_id, token, "connect", ["127.0.0.1", port])
    assert not seen["ok"], seen
    assert seen["error"] in ("ENETUNREACH", "ECONNREFUSED", "EACCES", "EPERM"), seen


def test_worker_runs_unprivileged_with_limits(sandboxed: dict[str, Any]) -> None:
    server: RunningServer = sandboxed["server"]
    model_id, token = sandboxed["probe"]["id"], sandboxed["probe"]["query_token"]
    ids = probe(server, model_id, token, "ids")
    if ROOT:
        assert ids["uid"] == 65534 and ids["gid"] == 65534, ids
    else:
        assert ids["uid"] == os.getuid()
    assert ids["nofile"] == 1024 and ids["core"] == 0, ids
    flood = probe(server, model_id, token, "open_many")
    assert flood["error"] == "EMFILE" and 900 < flood["opened"] < 1024, flood
    assert server.predict(model_id, [{"do": "echo"}], token=token).status_code == 200


def test_options_loosen_and_tighten_the_sandbox(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    """--worker-network opens the network (the control of the test above); CPU and file limits
    are applied as asked, and a worker past its CPU time is replaced with a clear error."""
    server = spawn_server(
        "--worker-network", "--worker-cpu-seconds", "3", "--worker-max-files", "64"
    )
    model = _upload(
        server,
        bundle_factory(name="probe", source=PROBE_SOURCE, class_name="Probe", sample={"do": "x"}),
    )
    model_id, token = model["id"], model["query_token"]
    port = int(server.url.rsplit(":", 1)[1])
    assert probe(server, model_id, token, "connect", ["127.0.0.1", port])["ok"]
    ids = probe(server, model_id, token, "ids")
    assert ids["nofile"] == 64 and ids["cpu"] == 4, ids
    assert probe(server, model_id, token, "open_many")["opened"] < 64
    spun = requests.post(
        f"{server.url}/v1/models/{model_id}/predict",
        json={"instances": [{"do": "spin"}]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert spun.status_code == 502, spun.text
    assert "CPU time limit" in spun.json()["error"]["message"]
    assert server.predict(model_id, [{"do": "echo"}], token=token).status_code == 200
