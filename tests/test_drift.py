"""Drift and version diffs end to end: a real kernel (nbclient) deploys to the real session server,
then changes its model in each of the four ways; after each, the kernel's drift report, the query
panel's notice and ``%easytensor_models`` say what changed, and a deploy clears them. The two
versions are then compared with ``easytensor models diff``."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import requests
from bundles import make_bundle
from conftest import RunningServer
from test_magics import errors_of, kernel_env, run_notebook, text_of  # noqa: F401

from easytensor_jupyter.drift import compare
from easytensor_jupyter.fingerprint import class_parts, helper_parts

SETUP = "%load_ext easytensor_jupyter\nimport json\nimport torch\nimport torch.nn as nn"
REPORT = (
    "from easytensor_jupyter.drift_watch import _ACTIVE, report\n"
    "notices = [r().drift_notice.layout.display for r in _ACTIVE[0]._panels if r()]\n"
    "print(json.dumps({'report': report()._repr_json_(), 'notices': notices}))"
)
CLASS = """class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, x):
        return self.fc(x)

    def predict_single(self, x):
        return round(float(self.forward(prep(x))), 4)
"""


def _report(cell: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    lines = [line for line in text_of(cell).splitlines() if line.startswith('{"report"')]
    assert lines, text_of(cell)
    body = json.loads(lines[-1])
    models = body["report"]["models"]
    assert len(models) == 1, models
    return next(iter(models.values())), body["notices"]


def test_drift_of_each_kind_shows_and_clears_after_deploy(
    kernel_env: RunningServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = f"drift-{uuid.uuid4().hex[:8]}"
    changed_class = CLASS.replace("self.forward(prep(x))", "self.fc(prep(x))")
    cells = [
        SETUP,
        "SCALE = 2.0\ndef prep(x):\n    return torch.tensor(x) * SCALE",
        f'%%easytensor_model "{name}" --instance m --sample "[1.0, 2.0]"\n{CLASS}\nm = Net()',
        REPORT,  # 3: same
        "saved = m.fc.bias.detach().clone()\nwith torch.no_grad():\n    m.fc.bias += 0.5",
        REPORT,  # 5: weights
        "with torch.no_grad():\n    m.fc.bias.copy_(saved)\nSCALE = 3.0",
        REPORT,  # 7: helpers
        "SCALE = 2.0",
        f'%%easytensor_model "{name}" -r "requests==2.0"\n{CLASS}',
        REPORT,  # 10: requirements
        f'%%easytensor_model "{name}"\n{changed_class}',
        REPORT,  # 12: class
        "%easytensor_models",  # 13
        "with torch.no_grad():\n    m.fc.weight += 0.25\n%easytensor_deploy m --no-panel",
        REPORT,  # 15: deployed: clear
    ]
    out = run_notebook(cells, tmp_path)
    for cell in out:
        assert not errors_of(cell), (cell["source"], errors_of(cell), text_of(cell))

    same, notices = _report(out[3])
    assert same["state"] == "same", same
    assert notices == ["none"], notices
    model_id = same["model_id"]

    weights, notices = _report(out[5])
    assert weights["kinds"] == ["weights"], weights
    assert weights["weights_changed"] == ["fc.bias"] and weights["weights_total"] == 2
    assert abs(weights["max_abs_diff"] - 0.5) < 1e-6, weights
    assert "weights changed: 1 of 2 tensors, max abs difference 0.5" in weights["message"]
    assert notices == ["block"], notices

    helpers, _ = _report(out[7])
    assert helpers["kinds"] == ["helpers"] and helpers["helpers"] == ["SCALE"], helpers

    reqs, _ = _report(out[10])
    assert reqs["kinds"] == ["requirements"], reqs
    assert reqs["requirements_added"] == ["requests==2.0"], reqs

    klass, notices = _report(out[12])
    assert klass["kinds"] == ["class"] and klass["methods"] == ["predict_single"], klass
    assert notices == ["block"], notices
    listing = text_of(out[13])
    assert "differs from the deployed v1: class source changed: predict_single" in listing

    cleared, notices = _report(out[15])
    assert cleared["state"] == "same" and cleared["version"] == 2, cleared
    assert notices == ["none"], notices

    # The two versions, compared on the command line.
    server = kernel_env
    diff = subprocess.run(
        [sys.executable, "-m", "easytensor_jupyter.cli", "models", "diff", model_id, "1", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"EASYTENSOR_URL": server.url, "EASYTENSOR_API_KEY": server.admin_key, **_path()},
    )
    assert diff.returncode == 0, diff.stderr
    text = diff.stdout
    assert "--- v1/model.py" in text and "+++ v2/model.py" in text, text
    assert "-        return round(float(self.forward(prep(x))), 4)" in text, text
    assert "+        return round(float(self.fc(prep(x))), 4)" in text, text
    assert "weights: 1 of 2 tensors changed, max abs difference 0.25" in text, text
    assert "sample:" in text, text  # the live answer moved with the weights


def _path() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME")}


def test_versions_without_hashes_say_unknown(server: RunningServer, tmp_path: Path) -> None:
    """A version uploaded before fingerprints were recorded: the route says null, drift unknown."""
    bundle = make_bundle(tmp_path / "old", name=f"old-{uuid.uuid4().hex[:8]}")
    reply = server.upload(bundle)
    assert reply.status_code == 201, reply.text
    model_id = reply.json()["id"]
    found = requests.get(
        f"{server.url}/v1/models/{model_id}/versions/1/fingerprint",
        headers=server.admin,
        timeout=10,
    ).json()
    assert found["fingerprint"] is None
    drift = compare(model_id, "old", 1, found["fingerprint"], {}, dict)
    assert drift.state == "unknown"
    assert drift.message() == (
        "Drift from v1 unknown: v1 was deployed before EasyTensor recorded hashes; "
        "deploy again (with --force if nothing changed) to compare"
    )
    missing = requests.get(
        f"{server.url}/v1/models/{model_id}/diff",
        params={"from": 1, "to": 7},
        headers=server.admin,
        timeout=10,
    )
    assert missing.status_code == 404 and "has no version 7" in missing.text, missing.text
    denied = requests.get(f"{server.url}/v1/models/{model_id}/diff?from=1&to=1", timeout=10)
    assert denied.status_code == 401, denied.text


def test_fingerprint_names_methods_and_helpers() -> None:
    source = "import torch\nLABELS = {0: 'a'}\ndef helper(x):\n    return x\n\n\n" + CLASS
    edited = source.replace("return x\n", "return x + 1\n").replace("4)", "2)")
    a, b = class_parts(source, "Net"), class_parts(edited, "Net")
    assert sorted(k for k in a if a[k] != b[k]) == ["predict_single"]
    ha, hb = helper_parts(source, "Net"), helper_parts(edited, "Net")
    assert set(ha) == {"import torch", "LABELS", "helper"}
    assert sorted(k for k in ha if ha[k] != hb[k]) == ["helper"]
