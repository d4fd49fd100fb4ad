"""Streaming in a real kernel: ``%%easytensor_model`` checks the joined stream of the sample
in a fresh process, and the query panel shows the chunks as they arrive with their timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import RunningServer
from test_magics import SETUP, errors_of, run_notebook, text_of

STREAMER = """%%easytensor_model "Spelled out" --instance speller --sample "'streaming'"
import time

class Speller(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def predict_single(self, text):
        return "".join(self.predict_stream(text))

    def predict_stream(self, text):
        for ch in text.upper():
            time.sleep(0.08)
            yield ch

speller = Speller()"""

UNSTEADY = """%%easytensor_model "Unsteady" --instance unsteady --sample "'x'"
import random

class Unsteady(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def predict_single(self, text):
        return text

    def predict_stream(self, text):
        yield str(random.random())

unsteady = Unsteady()"""

PANEL = """from easytensor_jupyter import QueryPanel, last_deployment
panel = QueryPanel(last_deployment().model_id)
seen = []
panel.answer.observe(lambda change: seen.append(change["new"]), names="value")
panel.predict()
panel.wait(60)
print(json.dumps({"answer": panel.answer.value, "status": panel.latency.value,
                  "updates": len(seen), "error": panel.error.value,
                  "history": panel.history[0].answer}))"""


@pytest.fixture
def kernel_env(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> RunningServer:
    monkeypatch.setenv("EASYTENSOR_URL", server.url)
    monkeypatch.setenv("EASYTENSOR_API_KEY", server.admin_key)
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path / "kernel-home"))
    return server


def test_deploy_checks_the_stream_and_the_panel_streams(
    kernel_env: RunningServer, tmp_path: Path
) -> None:
    outputs = run_notebook([SETUP, STREAMER, PANEL, UNSTEADY], tmp_path)
    for cell in outputs[:3]:
        assert not errors_of(cell), text_of(cell)
    report = json.loads(text_of(outputs[2]).strip().splitlines()[-1])
    assert "STREAMING" in report["answer"] and report["history"] == "STREAMING"
    assert report["updates"] >= 3, report
    assert "9 chunks" in report["status"] and "first chunk" in report["status"]
    assert "chunks/s" in report["status"] and "v1" in report["status"]
    assert report["error"] == ""
    unsteady = text_of(outputs[3])
    assert "streams the sample differently from your live model" in unsteady, unsteady
