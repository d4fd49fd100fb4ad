"""The model's environment travels with it: a kernel that has a made-up package deploys to a
server that lacks it; the server builds an environment from a local wheel folder (no network),
reuses it for the same pins, builds another for a conflicting pin, and with environments off
refuses with 422 missing_requirements naming the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import RunningServer
from test_magics import errors_of, run_notebook, text_of
from wheels import build_wheel

SETUP = "%load_ext easytensor_jupyter\nimport json, torch\nimport torch.nn as nn"
MODEL = (
    '%%easytensor_model "Shouter" --instance shouter --no-panel {flags}\n'
    "import etdemo_shout\n\n"
    "class Shouter(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.lin = nn.Linear(1, 1)\n\n"
    "    def predict_single(self, text):\n        return etdemo_shout.shout(text)\n\n"
    "torch.manual_seed({seed})\nshouter = Shouter()"
)
REPORT = (
    "from easytensor_jupyter import last_deployment\nd = last_deployment()\n"
    "print(json.dumps({'id': d.model_id, 'token': d.token, 'version': d.version}))"
)


def _site_with(tmp_path: Path, wheel: Path) -> Path:
    """A folder the kernel imports the package from; the server never sees it."""
    site = tmp_path / f"site-{wheel.stem}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return site


def _deploy(
    server: RunningServer,
    site: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    flags: str = "",
) -> list[dict[str, object]]:
    with monkeypatch.context() as patch:
        patch.setenv("EASYTENSOR_URL", server.url)
        patch.setenv("EASYTENSOR_API_KEY", server.admin_key)
        patch.setenv("EASYTENSOR_HOME", str(tmp_path / f"kernel-home-{seed}"))
        patch.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        )
        return run_notebook([SETUP, MODEL.format(flags=flags, seed=seed), REPORT], tmp_path)


def _answer(server: RunningServer, report: dict[str, object], text: str) -> object:
    reply = requests.post(
        f"{server.url}/v1/models/{report['id']}/predict",
        json={"instances": [text]},
        headers={"Authorization": f"Bearer {report['token']}"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"][0]


def _report(cell: dict[str, object]) -> dict[str, object]:
    lines = [line for line in text_of(cell).splitlines() if line.startswith("{")]
    assert lines, text_of(cell)
    report: dict[str, object] = json.loads(lines[-1])
    return report


def test_a_model_gets_its_environment_built_reused_and_separate_for_other_pins(
    spawn_server: Callable[..., RunningServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wheels = tmp_path / "wheels"
    one = build_wheel(
        wheels, "etdemo-shout", "1.0.0", "def shout(t):\n    return t.upper() + '!'\n"
    )
    two = build_wheel(
        wheels, "etdemo-shout", "2.0.0", "def shout(t):\n    return t.upper() + '!!'\n"
    )
    server = spawn_server("--find-links", str(wheels))
    first = _deploy(server, _site_with(tmp_path, one), tmp_path, monkeypatch, seed=1)
    assert not any(errors_of(c) for c in first), [errors_of(c) for c in first]
    output = text_of(first[1])
    assert "Requirements: etdemo-shout==1.0.0; torch and Python are the server's" in output
    assert "Building environment: etdemo-shout==1.0.0" in output
    report = _report(first[2])
    assert _answer(server, report, "hi") == "HI!"
    envs = server.store / "envs"
    assert len([p for p in envs.iterdir() if not p.name.startswith(".")]) == 1

    again = _deploy(server, _site_with(tmp_path, one), tmp_path, monkeypatch, seed=2)
    assert not any(errors_of(c) for c in again), [errors_of(c) for c in again]
    assert "reused an environment" in text_of(again[1])
    assert _report(again[2])["version"] == 2
    assert len([p for p in envs.iterdir() if not p.name.startswith(".")]) == 1

    other = _deploy(server, _site_with(tmp_path, two), tmp_path, monkeypatch, seed=3)
    assert not any(errors_of(c) for c in other), [errors_of(c) for c in other]
    assert _answer(server, _report(other[2]), "hi") == "HI!!"
    assert len([p for p in envs.iterdir() if not p.name.startswith(".")]) == 2
    model = requests.get(f"{server.url}/v1/models/{report['id']}", headers=server.admin, timeout=10)
    versions = model.json()["versions"]
    assert {v["environment"] for v in versions} == {"ready"}
    assert all(v["warnings"] == [] for v in versions)
    assert [v["requirements"] for v in versions][-1] == ["etdemo-shout==2.0.0"]


def test_with_environments_off_the_upload_names_what_is_missing(
    spawn_server: Callable[..., RunningServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wheel = build_wheel(
        tmp_path / "wheels", "etdemo-shout", "1.0.0", "def shout(t):\n    return t\n"
    )
    server = spawn_server("--model-envs", "off")
    cells = _deploy(server, _site_with(tmp_path, wheel), tmp_path, monkeypatch, seed=4)
    message = " ".join(errors_of(cells[1]))
    assert "Nothing was uploaded" in message and "missing_requirements" in message, message
    assert "etdemo-shout (notebook: ==1.0.0; server: not installed)" in message
    models = requests.get(f"{server.url}/v1/models", headers=server.admin, timeout=10).json()
    assert models["models"] == []
