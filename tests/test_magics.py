"""``%%easytensor_model`` in a real kernel (nbclient) against a real server, checked over HTTP."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests
from conftest import RunningServer
from nbclient import NotebookClient

SETUP = "%load_ext easytensor_jupyter\nimport json\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F"


def run_notebook(cells: list[str], cwd: Path, timeout: int = 240) -> list[dict[str, Any]]:
    """Execute cells in a fresh kernel; return each code cell's outputs (errors are kept, not raised)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return [{"outputs": cell.get("outputs", []), "source": cell.source} for cell in nb.cells]


def text_of(cell: dict[str, Any]) -> str:
    parts = []
    for out in cell["outputs"]:
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def errors_of(cell: dict[str, Any]) -> list[str]:
    """Error outputs, plus UsageErrors, which IPython prints on stderr instead."""
    found = [f"{o['ename']}: {o['evalue']}" for o in cell["outputs"] if o["output_type"] == "error"]
    found += [
        o["text"].strip()
        for o in cell["outputs"]
        if o["output_type"] == "stream" and o["name"] == "stderr" and "UsageError:" in o["text"]
    ]
    return found


def last_json(cell: dict[str, Any]) -> Any:
    lines = [line for line in text_of(cell).splitlines() if line.startswith("{")]
    assert lines, f"no JSON line in output:\n{text_of(cell)}"
    return json.loads(lines[-1])


def served(server: RunningServer, model_id: str, token: str, instances: list[Any]) -> list[Any]:
    reply = requests.post(
        f"{server.url}/v1/models/{model_id}/predict",
        json={"instances": instances},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    predictions: list[Any] = reply.json()["predictions"]
    return predictions


def model_names(server: RunningServer) -> set[str]:
    models = requests.get(f"{server.url}/v1/models", headers=server.admin, timeout=10).json()[
        "models"
    ]
    return {m["name"] for m in models}


@pytest.fixture
def kernel_env(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[RunningServer]:
    """Kernels started in this test talk to the session server."""
    monkeypatch.setenv("EASYTENSOR_URL", server.url)
    monkeypatch.setenv("EASYTENSOR_API_KEY", server.admin_key)
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path / "kernel-home"))
    yield server


def report_cell(var: str, dep: str, inputs: str) -> str:
    return (
        f"print(json.dumps({{'id': {dep}.model_id, 'token': {dep}.token, 'version': {dep}.version, "
        f"'inputs': {inputs}, 'live': [{var}.predict_single(x) for x in {inputs}]}}))"
    )


def test_capture_cases_deploy_and_answer_like_the_notebook(
    kernel_env: RunningServer, tmp_path: Path
) -> None:
    """Imports in every form, helper calling helper, helper module class, constants, a tensor, a lambda."""
    cells = [
        SETUP + "\nfrom collections import Counter\nimport numpy as np",
        "STOP_WORDS = {'the', 'a', 'of'}\nLABELS = {0: 'neg', 1: 'pos'}\nVOCAB = {'good': 1, 'bad': 2, 'great': 3, 'awful': 4}\n"
        "SCALE = torch.tensor([0.5, 2.0])\nOFFSETS = np.array([0.25, -0.25], dtype=np.float32)",
        "def clean(text):\n    return [w for w in text.lower().split() if w not in STOP_WORDS]\n\n"
        "def encode(text):\n    return [VOCAB.get(w, 0) for w in clean(text)] or [0]\n\n"
        "count_words = lambda text: Counter(clean(text))",
        "class Encoder(nn.Module):\n    def __init__(self, dim):\n        super().__init__()\n        self.emb = nn.EmbeddingBag(5, dim)\n\n"
        "    def forward(self, ids):\n        return self.emb(torch.tensor(ids), torch.tensor([0]))",
        '%%easytensor_model "Sentiment capture" --instance clf --sample "\'the good movie\'"\n'
        "class Sentiment(nn.Module):\n    def __init__(self, hidden=4):\n        super().__init__()\n"
        "        self.encoder = Encoder(hidden)\n        self.head = nn.Linear(hidden, 2)\n\n"
        "    def predict_single(self, text):\n        logits = self.head(F.relu(self.encoder(encode(text))))[0] * SCALE + torch.from_numpy(OFFSETS)\n"
        "        return {'label': LABELS[int(logits.argmax())], 'words': sum(count_words(text).values()),\n"
        "                'score': round(float(logits.softmax(0)[1]), 5)}\n\n"
        "torch.manual_seed(3)\nclf = Sentiment(hidden=6)",
    ]
    inputs = "['a good day', 'awful and bad', 'the great of the great']"
    # The instance is built in the class cell itself; its hidden=6 must still be recorded.
    cells.append(
        "from easytensor_jupyter import last_deployment\ndep = last_deployment()\n"
        + report_cell("clf", "dep", inputs)
    )
    outputs = run_notebook(cells, tmp_path)
    for cell in outputs:
        assert not errors_of(cell), errors_of(cell)
    report = last_json(outputs[-1])
    assert served(kernel_env, report["id"], report["token"], report["inputs"]) == report["live"]


def test_train_then_rerun_class_cell_with_magic(kernel_env: RunningServer, tmp_path: Path) -> None:
    """The natural flow: define, build and train, then add the magic to the class cell and re-run it."""
    body = (
        "class Scorer(nn.Module):\n    def __init__(self, width):\n        super().__init__()\n        self.lin = nn.Linear(width, 1)\n\n"
        "    def predict_single(self, xs):\n        return float(self.lin(torch.tensor(xs, dtype=torch.float32)))"
    )
    cells = [
        SETUP,
        body,
        "torch.manual_seed(0)\nmodel = Scorer(3)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for _ in range(20):\n    opt.zero_grad(); loss = (model.lin(torch.ones(4, 3)) - 2).pow(2).mean(); loss.backward(); opt.step()\n"
        "model.predict_single([1.0, 2.0, 3.0])",
        '%%easytensor_model "Scorer rerun" --instance model\n' + body,
        "from easytensor_jupyter import last_deployment\ndep = last_deployment()\n"
        + report_cell("model", "dep", "[[1.0, 2.0, 3.0], [0.0, 0.5, -1.0]]"),
        '%%easytensor_model "Scorer rerun" --instance model\n' + body,
    ]
    outputs = run_notebook(cells, tmp_path)
    for cell in outputs:
        assert not errors_of(cell), errors_of(cell)
    report = last_json(outputs[4])
    assert served(kernel_env, report["id"], report["token"], report["inputs"]) == pytest.approx(
        report["live"]
    )
    assert "Unchanged" in text_of(outputs[5]), (
        "re-deploying unchanged source and weights must say so"
    )
    model = requests.get(
        f"{kernel_env.url}/v1/models/{report['id']}", headers=kernel_env.admin, timeout=10
    ).json()
    assert [v["version"] for v in model["versions"]] == [1]
    provenance = model["versions"][0]["provenance"]
    assert provenance["execution_count"] >= 4 and len(provenance["source_sha256"]) == 64


def test_deploy_later_with_quoted_name_and_init(kernel_env: RunningServer, tmp_path: Path) -> None:
    body = (
        "class Wide(nn.Module):\n    def __init__(self, n_in, n_out=2):\n        super().__init__()\n        self.lin = nn.Linear(n_in, n_out)\n\n"
        "    def predict_single(self, xs):\n        return self.lin(torch.tensor(xs)).tolist()"
    )
    cells = [
        SETUP,
        '%%easytensor_model "Wide model, later"\n' + body,
        "torch.manual_seed(1)\nw = Wide(4, n_out=3)",
        "dep = %easytensor_deploy w --sample '[1.0, 0.0, 0.0, 2.0]'\n"
        + report_cell("w", "dep", "[[1.0, 0.0, 0.0, 2.0]]"),
        "%easytensor_models",
        "w_bad = Wide(4, n_out=3)\n%easytensor_deploy w_bad --name 'Wide forced init' --init '{\"n_in\": 4, \"n_out\": 2}'",
    ]
    outputs = run_notebook(cells, tmp_path)
    for cell in outputs[:5]:
        assert not errors_of(cell), errors_of(cell)
    report = last_json(outputs[3])
    assert served(kernel_env, report["id"], report["token"], report["inputs"]) == [
        pytest.approx(report["live"][0])
    ]
    assert "Wide model, later" in text_of(outputs[4])
    assert any(
        "Nothing was uploaded" in e and "mis-shaped keys" in e for e in errors_of(outputs[5])
    ), text_of(outputs[5])
    assert "Wide forced init" not in model_names(kernel_env)


def test_uncapturable_global_and_parity_failure_upload_nothing(
    kernel_env: RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    cells = [
        SETUP,
        "handle = open('notes.txt')",
        '%%easytensor_model "Leaky model" --instance m\n'
        "class Leaky(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.lin = nn.Linear(1, 1)\n\n"
        "    def predict_single(self, x):\n        return handle.name + str(x)\n\nm = Leaky()",
        "import random",
        '%%easytensor_model "Drifting model" --instance d --sample 1.0\n'
        "class Drift(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.lin = nn.Linear(1, 1)\n\n"
        "    def predict_single(self, x):\n        return float(self.lin(torch.tensor([x]))) + random.random()\n\nd = Drift()",
    ]
    outputs = run_notebook(cells, tmp_path)
    leaky = " ".join(errors_of(outputs[2]))
    assert "UsageError" in leaky and "'handle'" in leaky and "cell [2]" in leaky, leaky
    drift = " ".join(errors_of(outputs[4]))
    assert "Nothing was uploaded" in drift and "differently" in drift, drift
    names = model_names(kernel_env)
    assert "Leaky model" not in names and "Drifting model" not in names


def test_embedded_server_starts_on_demand_and_stops_with_the_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    for var in ("EASYTENSOR_URL", "EASYTENSOR_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EASYTENSOR_HOME", str(home))
    cells = [
        SETUP,
        '%%easytensor_model "Embedded demo" --instance e --sample 2.0\n'
        "class Doubler(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.lin = nn.Linear(1, 1)\n\n"
        "    def predict_single(self, x):\n        return float(self.lin(torch.tensor([x])))\n\ne = Doubler()",
        "dep = _\n"
        + report_cell("e", "dep", "[2.0, 3.0]")
        + "\nprint(json.dumps({'url': dep.endpoint}))",
        "%easytensor_server status",
    ]
    outputs = run_notebook(cells, tmp_path)
    for cell in outputs:
        assert not errors_of(cell), errors_of(cell)
    assert "Server http://127.0.0.1:" in text_of(outputs[3])
    info = (
        json.loads((home / "server.json").read_text()) if (home / "server.json").exists() else None
    )
    pid = info["pid"] if info else None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (home / "server.json").exists():
        time.sleep(0.2)
    assert not (home / "server.json").exists(), (
        "the embedded server outlived the kernel that started it"
    )
    if pid is not None:
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
