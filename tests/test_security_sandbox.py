"""The worker sandbox, attacked from inside: hostile model code in a real ``easytensor serve``.

``PROBE_SOURCE``'s ``predict_single`` takes one action (plant links in other workers' folders,
open another worker's memory, kill the server, fork without end, send a huge frame...) and
returns what happened, so each denial is checked where it matters: in untrusted code running
in a real worker. Every attack runs against a server started as root and against one started
by a normal user (a throwaway account made with ``useradd``), one server per mode shared by
all attacks. Each denial has a control (the same probe on something allowed) so a probe that
always failed could not pass. ``ET_TEST_NO_SANDBOX=1`` starts those servers with
``--no-worker-sandbox``: the attacks then succeed and these tests fail, as they must.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from bundles import Bundle, make_bundle
from sandbox_probe import PROBE_SOURCE
from sandbox_user import make_user, remove_user, user_prefix
from servers import LISTENING, RunningServer, alive, wait_until

from easytensor_jupyter.inference.backends.local.sandbox import default_memory_mb
from easytensor_jupyter.inference.backends.local.watchdog import rss_bytes, tree_pids

__all__ = ["PROBE_SOURCE", "probe"]

ROOT = os.geteuid() == 0
NO_SANDBOX = os.environ.get("ET_TEST_NO_SANDBOX") == "1"
MEMORY_MB = 700
OUTPUT_MB = 16
TMP_MB = 32
SHARED_ARGS = (
    "--predict-timeout",
    "40",
    "--worker-memory-mb",
    str(MEMORY_MB),
    "--worker-max-output-mb",
    str(OUTPUT_MB),
    "--worker-tmp-mb",
    str(TMP_MB),
    "--worker-idle-cpu",
    "2",
    "--worker-env",
    "ET_SANDBOX_PASSED",
)
SECRET = "pg-secret-" + uuid.uuid4().hex


def probe(server: RunningServer, model_id: str, token: str, do: str, arg: Any = None) -> Any:
    response = server.predict(model_id, [{"do": do, "arg": arg}], token=token)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def _upload(server: RunningServer, bundle: Bundle) -> dict[str, Any]:
    response = server.upload(bundle)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _launch(
    home: Path, args: tuple[str, ...], env: dict[str, str], prefix: list[str]
) -> RunningServer:
    """``easytensor serve`` on a free port, as the user ``prefix`` switches to."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    full_env.update(env, EASYTENSOR_HOME=str(home))
    log_path = home.parent / f"server-{uuid.uuid4().hex[:6]}.log"
    command = [*prefix, sys.executable, "-m", "easytensor_jupyter.cli", "serve", "--port", "0"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, *args], stdout=log, stderr=subprocess.STDOUT, env=full_env
        )
    deadline = time.monotonic() + 60
    while not (match := LISTENING.search(log_path.read_text(errors="replace"))):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    key = (home / "admin_key").read_text().strip()
    return RunningServer(match.group(1), key, home, home / "store", proc, log_path)


@dataclass
class Box:
    """One mode's server, its probe models, and where things live."""

    mode: str
    server: RunningServer
    probe: dict[str, Any]
    other: dict[str, Any]
    server_home: Path
    base: Path
    user: pwd.struct_passwd | None

    def act(self, do: str, arg: Any = None, model: str = "probe") -> Any:
        body = self.probe if model == "probe" else self.other
        return probe(self.server, body["id"], body["query_token"], do, arg)

    def ask(self, do: str, arg: Any = None) -> requests.Response:
        body = self.probe
        return self.server.predict(body["id"], [{"do": do, "arg": arg}], body["query_token"])

    def worker_of(self, model: str = "probe") -> int:
        """Host pid of the model's worker process (the one running model code)."""
        name = (self.probe if model == "probe" else self.other)["name"]
        self.act("echo", model=model)
        for pid in tree_pids(self.server.proc.pid):
            with contextlib.suppress(OSError, ValueError):
                if b"worker_main" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                manifest = json.loads(Path(f"/proc/{pid}/cwd/manifest.json").read_bytes())
                if manifest["name"] == name:
                    return pid
        raise AssertionError(f"no worker of {name} found")

    def restarts(self, reason: str) -> float:
        text = requests.get(f"{self.server.url}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("easytensor_worker_restarts_total{")
            and f'model="{self.probe["id"]}"' in line
            and f'reason="{reason}"' in line
        )


MODES = ["root", "user"] if ROOT else ["user"]


def _server_home(base: Path, user: pwd.struct_passwd | None) -> tuple[Path, list[str]]:
    """The home of the server's user, and the prefix that runs a command as that user."""
    if user is None:
        (base / "server-home").mkdir()
        return base / "server-home", []
    prefix = user_prefix(user)
    tried = subprocess.run(
        [*prefix, "bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"],
        capture_output=True,
        text=True,
    )
    if tried.returncode != 0:
        pytest.skip(f"this kernel gives a normal user no namespaces: {tried.stderr.strip()}")
    return Path(user.pw_dir), prefix


def _probe_bundle(folder: Path, name: str, tail: str = "") -> Bundle:
    source = PROBE_SOURCE + tail
    return make_bundle(folder, name=name, source=source, class_name="Probe", sample={"do": "x"})


@pytest.fixture(scope="module", params=MODES)
def box(request: pytest.FixtureRequest) -> Iterator[Box]:
    mode: str = request.param
    # Not in the temp folder: a worker's /tmp is its own, so a home there would look writable.
    parent = Path("/home") if ROOT else Path.home() / ".cache"
    parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="et-sandbox-", dir=parent))
    base.chmod(0o755)
    user = make_user() if mode == "user" and ROOT else None
    running = None
    try:
        server_home, prefix = _server_home(base, user)
        home = server_home / ".easytensor"
        home.mkdir()
        if user is not None:
            os.chown(home, user.pw_uid, user.pw_gid)
        env = {"PGPASSWORD": SECRET, "ET_SANDBOX_PASSED": "passed", "HOME": str(server_home)}
        args = (*SHARED_ARGS, "--no-worker-sandbox") if NO_SANDBOX else SHARED_ARGS
        running = _launch(home, args, env, prefix)
        first = _upload(running, _probe_bundle(base / "probe", "probe"))
        second = _upload(running, _probe_bundle(base / "other", "other", "\n# the other one\n"))
        yield Box(mode, running, first, second, server_home, base, user)
    finally:
        if running is not None:
            running.stop()
        if user is not None:
            remove_user(user)
        shutil.rmtree(base, ignore_errors=True)


def _sleepers(marker: int) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if cmdline.read_bytes() == f"sleep\0{marker}\0".encode():
                found.append(int(cmdline.parent.name))
    return found


def _blob_digests(store: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (store / "blobs").rglob("*")
        if p.is_file()
    }


# Critical 1 ------------------------------------------------------------------------------


def test_server_never_writes_through_links_a_worker_planted(box: Box) -> None:
    target = box.server_home / f"planted-{uuid.uuid4().hex[:6]}.txt"
    planted = box.act("plant", [str(target), box.server.proc.pid])
    innocent = make_bundle(box.base / f"innocent-{uuid.uuid4().hex[:6]}", name="innocent")
    response = box.server.upload(innocent)
    assert not target.exists(), f"the server wrote {target} through a planted link"
    assert planted == [], f"model code planted links in {planted}"
    assert response.status_code == 201, response.text
    body = response.json()
    assert box.server.predict(body["id"], ["hi"], body["query_token"]).status_code == 200


# High 2, 3, 4, 13 ------------------------------------------------------------------------


def test_workers_cannot_see_or_open_each_other(box: Box) -> None:
    other = box.worker_of("other")
    assert Path(f"/proc/{other}/cwd/model.py").read_text().endswith("# the other one\n")
    peek = box.act("peek", [other, box.server.proc.pid])
    for pid, seen in peek["seen"].items():
        for what, attempt in seen.items():
            assert not attempt["ok"], f"model code opened /proc/{pid}/{what}: {attempt}"
    assert other not in peek["visible"] and box.server.proc.pid not in peek["visible"], peek
    assert len(peek["visible"]) <= 4, f"model code sees other processes: {peek['visible']}"
    mine, theirs = box.act("ids"), box.act("ids", model="other")
    assert mine["uid"] != 0 and theirs["uid"] != 0, (mine, theirs)
    if box.mode == "root":
        assert mine["uid"] != theirs["uid"], "two workers share a uid"


def test_home_is_hidden_and_only_private_scratch_is_writable(box: Box) -> None:
    startup = box.server_home / ".ipython/profile_default/startup/owned.py"
    wrote = box.act("write", str(startup))
    assert not startup.exists(), "model code wrote an IPython startup file into the home"
    assert not wrote["ok"], wrote
    assert not box.act("list", str(box.server_home))["ok"]
    assert not box.act("read", str(box.server.home / "admin_key"))["ok"]
    candidates = ["/tmp", "/var/tmp", "/dev/shm", "/", "/bundle", "/etc", "/usr", "/root"]
    candidates += [str(box.server_home), str(box.base), sys.prefix, str(Path(__file__).parent)]
    candidates += [tempfile.gettempdir(), str(Path(sys.executable).resolve().parent)]
    writable = box.act("writable", list(dict.fromkeys(candidates)))
    assert sorted(writable) == ["/dev/shm", "/tmp", "/var/tmp"], writable


def test_no_signal_reaches_the_server_or_another_worker(box: Box) -> None:
    other = box.worker_of("other")
    done = box.act("kill", [box.server.proc.pid, other, "ppid"])
    time.sleep(0.5)
    assert box.server.proc.poll() is None, "model code killed the server"
    assert alive(other), "model code killed another model's worker"
    assert not done[str(box.server.proc.pid)]["ok"] and not done[str(other)]["ok"], done
    assert box.worker_of("other") == other
    assert box.act("echo")["echo"]


# Medium 5 to 12 --------------------------------------------------------------------------


def test_store_blobs_cannot_be_changed_by_a_worker(box: Box) -> None:
    before = _blob_digests(box.server.store)
    assert before
    tampered = box.act("tamper")
    assert "weights.safetensors" in tampered, tampered
    for name, attempt in tampered.items():
        assert not attempt["chmod"]["ok"] and not attempt["write"]["ok"], (name, attempt)
    assert _blob_digests(box.server.store) == before


def test_worker_environment_is_an_allowlist(box: Box) -> None:
    env = box.act("env")
    assert "PGPASSWORD" not in env, "a server secret reached model code"
    assert env.get("ET_SANDBOX_PASSED") == "passed", "--worker-env did not pass the variable"
    assert not [k for k in env if k.startswith("EASYTENSOR")], env
    allowed = {"PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "PYTHONPATH", "PYTHONUNBUFFERED"}
    allowed |= {"PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LANG", "TZ"}
    allowed |= {"TERM", "LANGUAGE", "ET_SANDBOX_PASSED", "PWD"}
    extra = {k for k in env if k not in allowed and not k.startswith("LC_")}
    assert not extra, f"variables beyond the allowlist: {sorted(extra)}"


def test_an_oversized_answer_is_refused_without_reading_it(box: Box) -> None:
    honest = box.ask("big", OUTPUT_MB + 4)
    assert honest.status_code == 422, honest.text
    assert honest.json()["error"]["code"] == "output_too_large"
    assert f"{OUTPUT_MB} MB limit (--worker-max-output-mb)" in honest.json()["error"]["message"]
    before = rss_bytes(box.server.proc.pid) or 0
    flood = box.ask("frame", 600)
    grown = ((rss_bytes(box.server.proc.pid) or 0) - before) / (1 << 20)
    assert flood.status_code == 502, flood.text
    error = flood.json()["error"]
    assert error["code"] == "worker_output_too_large", error
    assert error["detail"]["reason"] == "output_too_large", error
    assert "over the 16 MB limit (--worker-max-output-mb)" in error["message"], error
    assert grown < 64, f"the server grew by {grown:.0f} MB reading a refused frame"
    assert box.act("echo")["echo"]


def test_every_process_ends_with_its_worker(box: Box) -> None:
    marker = 900_000 + uuid.uuid4().int % 90_000
    try:
        assert box.act("daemon", marker) == "started"
        wait_until(lambda: bool(_sleepers(marker)), 5, "the double-forked daemon to start")
        crashed = box.ask("exit")
        assert crashed.status_code == 502, crashed.text
        wait_until(lambda: not _sleepers(marker), 5, "the daemon to end with its worker")
    finally:
        for pid in _sleepers(marker):
            os.kill(pid, signal.SIGKILL)
    assert box.act("echo")["echo"]


def test_a_fork_bomb_stops_at_the_process_limit(box: Box) -> None:
    bomb = box.act("forks", 400)
    assert bomb["error"] == "EAGAIN" and bomb["forked"] < 256, bomb
    assert box.act("forks", 20) == {"forked": 20, "error": None}


def test_memory_of_forked_children_counts_against_the_limit(box: Box) -> None:
    hog = box.ask("fork_hog", 900)
    assert hog.status_code == 502, hog.text
    error = hog.json()["error"]
    assert error["code"] == "worker_memory_limit", error
    assert error["detail"]["used_mb"] > MEMORY_MB, error
    assert box.act("echo")["echo"]


def test_defaults_cap_memory_and_cpu(box: Box) -> None:
    prefix = user_prefix(box.user) if box.user is not None else []
    extra = ["--no-worker-sandbox"] if NO_SANDBOX else []
    report = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "easytensor_jupyter.cli",
            "serve",
            "--sandbox-report",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    memory = re.search(r"memory limit over the whole process tree\s+on\s+(\d+) MB", report)
    assert memory and int(memory.group(1)) == int(default_memory_mb()), report
    assert re.search(r"computing with no request in flight is replaced\s+on\s+over 5 CPU s", report)
    quota = re.search(r"CPU quota per worker\s+(on |OFF)\s+(.*)", report)
    assert quota, report
    if box.mode == "root":
        allowed = re.match(r"(\d+) cores \(cgroup", quota.group(2))
        assert quota.group(1) == "on " and allowed, report
        limit = int(allowed.group(1))
        cores = box.act("cores", [3, limit + 2])
        assert cores < limit + 0.3, (
            f"{limit + 2} busy processes got {cores:.2f} cores, quota {limit}"
        )
    else:
        assert "no cgroup is delegated" in quota.group(2), report
    assert box.act("burn") == "burning"
    wait_until(lambda: box.restarts("cpu") >= 1, 30, "the idle worker burning CPU to be replaced")
    assert "with no request in flight, over the 2 s limit (--worker-idle-cpu)" in box.server.log()
    assert box.act("echo")["echo"]


def test_tmp_and_shm_are_private_and_capped(box: Box) -> None:
    mark = f"mark-{uuid.uuid4().hex[:8]}"
    folders = ("/tmp", "/var/tmp", "/dev/shm")
    try:
        for folder in folders:
            assert box.act("write", f"{folder}/{mark}")["ok"]
            listed = box.act("list", folder, model="other")
            assert listed["ok"] and mark not in listed["value"], f"{folder} is shared: {listed}"
            assert not (Path(folder) / mark).exists(), f"the worker's {folder} is the host's"
    finally:
        for folder in folders:
            (Path(folder) / mark).unlink(missing_ok=True)
    for path in ("/tmp/fill", "/dev/shm/fill"):
        filled = box.act("fill", [path, TMP_MB + 16])
        assert filled["error"] == "ENOSPC" and filled["written_mb"] <= TMP_MB, (path, filled)


# Around them -----------------------------------------------------------------------------


def test_worker_cannot_read_the_store_or_connect(box: Box) -> None:
    own = box.act("read", "model.py")
    assert own["ok"] and own["value"] > 0, own
    for forbidden in (box.server.home / "admin_key", box.server.store / "easytensor.sqlite3"):
        assert forbidden.is_file()
        assert not box.act("read", str(forbidden))["ok"], f"model code read {forbidden}"
    assert not box.act("list", str(box.server.store))["ok"]
    port = int(box.server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass
    seen = box.act("connect", ["127.0.0.1", port])
    assert not seen["ok"] and seen["error"] in ("ENETUNREACH", "ECONNREFUSED"), seen


def test_worker_runs_with_limits(box: Box) -> None:
    ids = box.act("ids")
    assert ids["cwd"] == "/bundle" and ids["nofile"] == 1024 and ids["core"] == 0, ids
    flood = box.act("open_many")
    assert flood["error"] == "EMFILE" and 900 < flood["opened"] < 1024, flood


def test_startup_says_what_is_on(box: Box) -> None:
    log = box.server.log()
    counted = re.search(r"Sandbox: (\d+) of (\d+) protections on", log)
    assert counted, log
    off = re.findall(r"Sandbox: OFF: (.*)", log)
    if box.mode == "root":
        assert off == [] and counted.group(1) == counted.group(2), log
    else:
        assert [line.split(":")[0] for line in off] == ["CPU quota per worker"], off


def test_options_loosen_and_tighten_the_sandbox(
    spawn_server: Callable[..., RunningServer], bundle_factory: Callable[..., Bundle]
) -> None:
    """--worker-network opens the network (the control of the denial above); CPU and file
    limits are applied as asked, and a worker past its CPU time is replaced with a clear error;
    without the sandbox the report says every protection is off."""
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
    assert "Sandbox: OFF: no network: --worker-network" in server.log()
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
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "easytensor_jupyter.cli",
            "serve",
            "--sandbox-report",
            "--no-worker-sandbox",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    on = [line for line in report.splitlines() if re.search(r"\s on \s", line)]
    assert len(on) == 3 and "3 of 16 protections on" in report, report
