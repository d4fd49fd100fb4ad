"""Query tokens from notebooks, in real kernels: one per model, labelled, never saved whole.

Two kernels run the same notebook against the session server with one ``EASYTENSOR_HOME``; the
test then reads the saved notebook (outputs and widget state, as nbclient writes them) and the
server's token list.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests
from conftest import RunningServer
from nbclient import NotebookClient

NOTEBOOK = "/home/newcomer/work/tokens_demo.ipynb"
CELLS = [
    "%load_ext easytensor_jupyter\nimport hashlib, json, requests\nimport torch\nfrom torch import nn",
    '%%easytensor_model "{name}"\n'
    "class Summer(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.scale = nn.Parameter(torch.ones(1))\n"
    "    def predict_single(self, features: list[float]):\n"
    "        return float(self.scale * sum(features))\n\n"
    "model = Summer()",
    "%easytensor_deploy model --no-panel",
    "import easytensor_jupyter\n"
    "d = easytensor_jupyter.last_deployment()\n"
    "r = requests.post(d.endpoint, json={{'instances': [[1, 2, 3]]}},\n"
    "                  headers={{'Authorization': f'Bearer {{d.token}}'}}, timeout=60)\n"
    "print(json.dumps({{'status': r.status_code, 'answer': r.json()['predictions'][0],\n"
    "                  'sha': hashlib.sha256(d.token.encode()).hexdigest()}}))",
    "%easytensor_models",
]


def _run(cells: list[str], home: Path, server: RunningServer, monkeypatch: Any) -> str:
    """Execute in a fresh kernel as Jupyter would for NOTEBOOK; the saved .ipynb text."""
    monkeypatch.setenv("EASYTENSOR_URL", server.url)
    monkeypatch.setenv("EASYTENSOR_API_KEY", server.admin_key)
    monkeypatch.setenv("EASYTENSOR_HOME", str(home))
    monkeypatch.setenv("JPY_SESSION_NAME", NOTEBOOK)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    NotebookClient(nb, timeout=240, kernel_name="python3", store_widget_state=True).execute()
    return nbformat.writes(nb)


def _outputs(saved: str, index: int) -> str:
    """What a cell of the saved notebook shows: streams and display data, as text."""
    parts = []
    for out in json.loads(saved)["cells"][index].get("outputs", []):
        text = out.get("text")
        if text is not None:
            parts.append("".join(text) if isinstance(text, list) else text)
        else:
            parts.append(json.dumps(out.get("data", {})))
    return "\n".join(parts)


@pytest.mark.timeout(600)
def test_a_notebook_keeps_one_token_per_model_and_never_saves_it(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    home = tmp_path / "home"
    cells = [c.replace("{name}", unique_name).replace("{{", "{").replace("}}", "}") for c in CELLS]
    first = _run(cells, home, server, monkeypatch)
    kept = json.loads((home / "query_tokens.json").read_text())["tokens"]
    assert len(kept) == 1 and kept[0]["origin"] == f"notebook:{NOTEBOOK}"
    token, model_id = kept[0]["token"], kept[0]["model_id"]

    answer = json.loads(_outputs(first, 3).strip().splitlines()[-1])
    assert answer == {
        "status": 200,
        "answer": 6.0,
        "sha": hashlib.sha256(token.encode()).hexdigest(),
    }
    deployed = _outputs(first, 2)
    assert f"query token: {token[:9]}\u2026{token[-4:]} (new;" in deployed
    assert f"export EASYTENSOR_TOKEN=$(easytensor tokens show {model_id})" in deployed
    assert "Content-Type: application/json" in deployed
    assert "Content-Type: text/plain" not in deployed
    assert "one list[float]" in deployed
    assert f"{unique_name[:30]:30} v1 (1 version) " in _outputs(first, 4)

    # Again in a new kernel (the panel shown this time): the same token, nothing new minted.
    panel_cells = [*cells[:2], "%easytensor_deploy model --force"]
    second = _run(panel_cells, home, server, monkeypatch)
    assert "(the one this notebook already had;" in _outputs(second, 2)
    assert "application/vnd.jupyter.widget-view+json" in _outputs(second, 2)
    assert json.loads(second)["metadata"]["widgets"], "nbclient saved the widget state"

    listed = requests.get(
        f"{server.url}/v1/models/{model_id}/tokens", headers=server.admin, timeout=10
    ).json()["tokens"]
    assert [(t["revoked"], t["label"]) for t in listed] == [
        (False, "notebook tokens_demo.ipynb, cell 3")
    ]
    assert listed[0]["last_used_at"] is not None
    for saved in (first, second):
        assert token not in saved, "the whole token was saved in the notebook"
