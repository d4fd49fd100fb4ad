"""The request log and replay from a notebook, in a real kernel against the session server:
deploy, query, deploy a candidate that takes no traffic, read the log, compare the two versions
on the logged traffic and show the comparison as a table."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from conftest import RunningServer
from nbclient import NotebookClient

CELLS = [
    "%load_ext easytensor_jupyter\nimport json, requests\nimport torch\nfrom torch import nn\n"
    "import easytensor_jupyter",
    '%%easytensor_model "NAME"\n'
    "class Scaler(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.scale = nn.Parameter(torch.ones(1))\n"
    "    def predict_single(self, features: list[float]):\n"
    "        return round(float(self.scale * sum(features)), 4)\n\n"
    "model = Scaler()",
    "%easytensor_deploy model --no-panel",
    "d = easytensor_jupyter.last_deployment()\n"
    'easytensor_jupyter.set_request_log("NAME", "all")\n'
    "for xs in ([1, 2], [3, 4], [0, 0], [5]):\n"
    "    requests.post(d.endpoint, json={'instances': [xs]},\n"
    "                  headers={'Authorization': f'Bearer {d.token}'}, timeout=60)",
    "with torch.no_grad():\n    model.scale.fill_(2.0)",
    "%easytensor_deploy model --no-panel --candidate",
    "r = requests.post(d.endpoint, json={'instances': [[1, 1]]},\n"
    "                  headers={'Authorization': f'Bearer {d.token}'}, timeout=60)\n"
    "log = easytensor_jupyter.request_log('NAME')\n"
    "print(json.dumps({'served_by': r.headers['X-EasyTensor-Version'],\n"
    "                  'type': type(log).__name__,\n"
    "                  'inputs': [rec['input'] for rec in log],\n"
    "                  'tokens': sorted({rec['token'] for rec in log})}))",
    "c = easytensor_jupyter.compare('NAME', a=1, b=2)\n"
    "print(json.dumps({'cases': c.cases, 'agree': c.agree, 'agreement': c.agreement,\n"
    "                  'first': c.differing[0], 'latency': sorted(c.latency_ms)}))\n"
    "c",
]


def _text(cell: dict[str, object]) -> str:
    parts = []
    for out in cell.get("outputs", []):  # type: ignore[attr-defined]
        if out.get("text") is not None:
            parts.append(out["text"])
        else:
            parts.append(json.dumps(out.get("data", {})))
    return "\n".join(parts)


@pytest.mark.timeout(600)
def test_a_notebook_reads_its_model_log_and_compares_a_candidate(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    monkeypatch.setenv("EASYTENSOR_URL", server.url)
    monkeypatch.setenv("EASYTENSOR_API_KEY", server.admin_key)
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path / "home"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.replace("NAME", unique_name)) for src in CELLS]
    NotebookClient(nb, timeout=240, kernel_name="python3").execute()

    candidate = _text(nb.cells[5])
    assert "Version 2 is a candidate: it takes no traffic" in candidate, candidate
    seen = json.loads(_text(nb.cells[6]).strip().splitlines()[-1])
    assert seen["served_by"] == "1", "a candidate must not move the default"
    assert seen["type"] == "list"  # pandas is not installed here; with it, a DataFrame
    assert seen["inputs"] == [[[1, 1]], [[5]], [[0, 0]], [[3, 4]], [[1, 2]]]
    assert len(seen["tokens"]) == 1 and seen["tokens"][0].startswith("notebook")

    compared = _text(nb.cells[7])
    result = json.loads(compared.strip().splitlines()[0])
    # [0, 0] scales to 0 either way; the other four double.
    assert (result["cases"], result["agree"], result["agreement"]) == (5, 1, 0.2)
    assert result["first"] == {"index": 0, "input": [1, 1], "a": 2.0, "b": 4.0}
    assert result["latency"] == ["a", "b"]
    html = next(o["data"]["text/html"] for o in nb.cells[7]["outputs"] if "data" in o)
    assert "<b>v1 vs v2</b>" in html and "1 of 5 agree" in html and "<td>0</td>" in html
