"""The capture corpus: realistic notebook patterns, each deployed from a real kernel to a real
server and queried over HTTP; the served answers must equal the live model's. Refused patterns
must name the variable (or ``model.attr``), its cell, its type and a fix that works for it.

All cases run in one kernel, in order, as one long notebook would; a case that fails to deploy
does not stop the others, and the test reports every failing case at once.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import requests
from capture_corpus import CASES, REFUSALS, Case, Refusal
from conftest import RunningServer
from test_magics import errors_of, run_notebook, text_of

SETUP = (
    "%load_ext easytensor_jupyter\nimport json\nimport numpy as np\nimport torch\n"
    "import torch.nn as nn\nfrom easytensor_jupyter import magics as _et_magics\n"
    "from easytensor_jupyter.inference.runtime.loader import to_jsonable as _et_plain"
)


def _report(case: Case) -> str:
    return (
        f"_et_new = _et_magics._deployments[_et_before:]\n"
        f"{case.var}.eval()\n"
        f"with torch.inference_mode():\n"
        f"    _et_live = [_et_plain({case.var}.predict_single(x)) for x in {case.inputs}]\n"
        f"print(json.dumps({{'case': {case.key!r}, 'id': _et_new[-1].model_id if _et_new else None,"
        f" 'token': _et_new[-1].token if _et_new else None, 'inputs': {case.inputs},"
        f" 'live': _et_live}}))"
    )


def _cells(case: Case) -> list[str]:
    magic = f'%%easytensor_model "corpus {case.key}" --instance {case.var} --no-panel {case.flags}'
    return [
        case.setup or "pass",
        "_et_before = len(_et_magics._deployments)",
        f"{magic.rstrip()}\n{case.model}",
        _report(case),
    ]


def close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            return False
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return bool(a == b)


def _served(server: RunningServer, report: dict[str, Any]) -> Any:
    reply = requests.post(
        f"{server.url}/v1/models/{report['id']}/predict",
        json={"instances": report["inputs"]},
        headers={"Authorization": f"Bearer {report['token']}"},
        timeout=120,
    )
    if reply.status_code != 200:
        return f"HTTP {reply.status_code}: {reply.text[:300]}"
    return reply.json()["predictions"]


@pytest.fixture
def corpus_env(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> RunningServer:
    monkeypatch.setenv("EASYTENSOR_URL", server.url)
    monkeypatch.setenv("EASYTENSOR_API_KEY", server.admin_key)
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path / "kernel-home"))
    return server


@pytest.mark.timeout(900)
def test_corpus_deploys_with_parity(corpus_env: RunningServer, tmp_path: Path) -> None:
    assert len(CASES) >= 40
    only = os.environ.get("EASYTENSOR_CORPUS_ONLY")
    cases = [c for c in CASES if not only or c.key in only.split(",")]
    for case in cases:
        for name, text in case.files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
    cells = [SETUP]
    for case in cases:
        cells += _cells(case)
    outputs = run_notebook(cells, tmp_path, timeout=300)
    failures: list[str] = []
    passed = 0
    for index, case in enumerate(cases):
        setup, _, deploy, report_cell = outputs[1 + 4 * index : 5 + 4 * index]
        problems = errors_of(setup) + errors_of(deploy) + errors_of(report_cell)
        if problems:
            failures.append(f"{case.key}: {problems}")
            continue
        lines = [line for line in text_of(report_cell).splitlines() if line.startswith("{")]
        report = json.loads(lines[-1])
        if report["id"] is None:
            failures.append(f"{case.key}: nothing was deployed:\n{text_of(deploy)}")
            continue
        served = _served(corpus_env, report)
        if not close(served, report["live"]):
            failures.append(f"{case.key}: served {served!r}, live {report['live']!r}")
            continue
        missing = [text for text in case.expect_output if text not in text_of(deploy)]
        if missing:
            failures.append(f"{case.key}: deploy output lacks {missing}:\n{text_of(deploy)}")
            continue
        passed += 1
    print(f"capture corpus: {passed} of {len(cases)} cases deploy with parity")
    assert not failures, "\n\n".join(failures)


def _refusal_cells(refusal: Refusal) -> list[str]:
    magic = f'%%easytensor_model "refused {refusal.key}" --no-panel'
    return [refusal.setup or "pass", f"{magic} --instance {refusal.var}\n{refusal.model}"]


def test_refusals_name_the_variable_cell_type_and_a_fix(
    corpus_env: RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    cells = [SETUP]
    for refusal in REFUSALS:
        cells += _refusal_cells(refusal)
    outputs = run_notebook(cells, tmp_path)
    failures = []
    for index, refusal in enumerate(REFUSALS):
        message = " ".join(errors_of(outputs[2 + 2 * index]))
        missing = [text for text in refusal.expect if text not in message]
        present = [text for text in refusal.forbid if text in message]
        if "UsageError" not in message or missing or present:
            failures.append(f"{refusal.key}: missing {missing}, must not say {present}: {message}")
    assert not failures, "\n".join(failures)
    models = requests.get(f"{corpus_env.url}/v1/models", headers=corpus_env.admin, timeout=10)
    names = {m["name"] for m in models.json()["models"]}
    assert not any(name.startswith("refused ") for name in names)
