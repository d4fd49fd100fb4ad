"""The sandbox where bubblewrap is missing: what still holds, and a report that says what not.

A real worker process is started through ``Sandbox`` with ``bwrap.find`` answering "not
installed" (the one thing faked: we cannot uninstall a package for one test).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from bundles import make_bundle
from test_security_sandbox import PROBE_SOURCE

from easytensor_jupyter.inference.backends.base import WorkerSpec
from easytensor_jupyter.inference.backends.local import bwrap
from easytensor_jupyter.inference.backends.local.protections import describe, report_table
from easytensor_jupyter.inference.backends.local.sandbox import (
    DEFAULT_UIDS,
    Sandbox,
    SandboxOptions,
)
from easytensor_jupyter.inference.backends.local.worker import Worker

ROOT = os.geteuid() == 0


async def _ask(spec: WorkerSpec, box: Sandbox, instances: list[Any]) -> list[Any]:
    worker = Worker(
        spec, device="cpu", threads=1, max_pending=8, on_exit=lambda *_: None, sandbox=box
    )
    await worker.start()
    try:
        await worker.wait_ready(120)
        return await worker.predict(instances, 60)
    finally:
        await worker.stop()


def test_without_bubblewrap_the_report_says_so_and_a_root_server_still_drops_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bwrap, "find", lambda: None)
    box = Sandbox(SandboxOptions(memory_mb=1024))
    try:
        assert not box.confined and "apt-get install bubblewrap" in (box.why_not or "")
        rows = {p.name: p for p in describe(box, box.options)}
        pidns = rows["own PID namespace: no other process visible"]
        assert not pidns.on and "bubblewrap is not installed" in pidns.how
        assert rows["each worker has its own identity"].on == ROOT
        assert (
            rows["answer size capped"].on
            and rows["environment from an allowlist (+ --worker-env)"].on
        )
        assert "OFF  bubblewrap is not installed" in report_table(list(rows.values()))
        bundle = make_bundle(tmp_path / "b", name="probe", source=PROBE_SOURCE, class_name="Probe")
        for path in bundle.files.values():
            path.chmod(0o444)
        secret = tmp_path / "secret"
        secret.write_text("root only")
        secret.chmod(0o600)
        spec = WorkerSpec("probe", 1, dict(bundle.files), bundle.manifest.to_json_bytes())
        ids, read, env = asyncio.run(
            _ask(
                spec,
                box,
                [{"do": "ids"}, {"do": "read", "arg": str(secret)}, {"do": "env"}],
            )
        )
    finally:
        box.close()
    assert ids[0] and read[0] and env[0], (ids, read, env)
    assert "PGPASSWORD" not in env[1] and env[1]["HOME"] == "/tmp"
    if ROOT:
        assert DEFAULT_UIDS[0] <= ids[1]["uid"] <= DEFAULT_UIDS[1], ids
        assert read[1] == {"ok": False, "error": "EACCES"}, read
    else:
        assert ids[1]["uid"] == os.getuid()
