"""``easytensor deploy notebook.ipynb``: the example notebook deployed headless by the CLI serves
what the notebook's own model answers; a dry run writes bundles and uploads nothing; a notebook
that cannot deploy fails with the cell and the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests
from browser import write_notebook
from conftest import RunningServer

from easytensor_jupyter.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "notebooks" / "01_quickstart.ipynb"


def _printed_answers(path: Path) -> list[dict[str, Any]]:
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines() if out.output_type == "stream" else []:
                if line.startswith('{"served"'):
                    found.append(json.loads(line))
    return found


def test_deploy_example_notebook_serves_the_notebooks_answers(
    server: RunningServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path / "home"))
    executed = tmp_path / "executed.ipynb"
    code = main(
        [
            "deploy",
            str(EXAMPLE),
            "--url",
            server.url,
            "--api-key",
            server.admin_key,
            "--json",
            "--executed",
            str(executed),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    deployed = json.loads(out.out)["deployed"]
    assert [d["name"] for d in deployed] == ["News classifier"], deployed
    entry = deployed[0]
    assert entry["cell_index"] == 6 and entry["cell_id"] == "d7337d5a", entry
    assert entry["notebook"] == str(EXAMPLE)
    # What the notebook printed: the kernel's own model next to the endpoint's answer.
    answers = _printed_answers(executed)
    assert answers and answers[0]["live"] == "Business", answers
    headline = "Central bank holds interest rates as inflation cools"
    reply = requests.post(
        f"{server.url}/v1/models/{entry['id']}/predict",
        params={"version": entry["version"]},
        json={"instances": [headline, "Liverpool win the cup final"]},
        headers=server.admin,
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == [answers[0]["live"], "Sports"]
    model = requests.get(
        f"{server.url}/v1/models/{entry['id']}", headers=server.admin, timeout=10
    ).json()
    version = next(v for v in model["versions"] if v["version"] == entry["version"])
    assert version["provenance"]["cell_id"] == "d7337d5a", version["provenance"]


TINY = """%%easytensor_model "Tiny dry" --instance m --sample "[1.0, 2.0]"
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def predict_single(self, x):
        return round(float(self.fc(torch.tensor(x))), 4)

m = Tiny()"""


def test_dry_run_writes_bundles_and_uploads_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("EASYTENSOR_URL", "EASYTENSOR_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path / "home"))
    notebook = write_notebook(
        tmp_path / "tiny.ipynb",
        [
            "%load_ext easytensor_jupyter\nimport torch\nfrom torch import nn",
            TINY,
            "raise SystemExit('cells after the last deploy do not run in a dry run')",
        ],
    )
    out = tmp_path / "bundles"
    # No server anywhere: a dry run must not need one.
    code = main(["deploy", str(notebook), "--dry-run", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    assert f"Tiny dry from cell 1: bundle written to {out / 'Tiny-dry'}" in printed.out
    manifest = json.loads((out / "Tiny-dry" / "manifest.json").read_text())
    assert manifest["sample"]["input"] == [1.0, 2.0], manifest
    assert set(manifest["fingerprint"]["weights"]) == {"fc.weight", "fc.bias"}, manifest
    assert manifest["provenance"]["notebook"] == str(notebook)
    assert sorted(p.name for p in (out / "Tiny-dry").iterdir()) == [
        "manifest.json",
        "model.py",
        "weights.safetensors",
    ]
    assert not (tmp_path / "home" / "servers").exists() or not any(
        (tmp_path / "home" / "servers").iterdir()
    ), "a dry run started a server"


def _main(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The CLI in this process (no interpreter start-up), for the cases that fail early."""
    code = main(["deploy", *args])
    return code, capsys.readouterr().err


def test_notebooks_that_cannot_deploy_say_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path / "home"))
    plain = write_notebook(tmp_path / "plain.ipynb", ["x = 1"])
    code, err = _main(str(plain), "--dry-run", capsys=capsys)
    assert code == 1
    assert "plain.ipynb has no %%easytensor_model cell, so there is nothing to deploy" in err

    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    code, err = _main(str(broken), "--dry-run", capsys=capsys)
    assert code == 1 and "broken.ipynb is not a valid notebook" in err, err

    failing = write_notebook(
        tmp_path / "failing.ipynb",
        ["x = 1", "total = 1 / 0  # oops", "%%easytensor_model --instance m\nclass M: pass"],
    )
    cell_id = nbformat.read(failing, as_version=4).cells[1].id  # type: ignore[no-untyped-call]
    code, err = _main(str(failing), "--dry-run", "--out", str(tmp_path / "o"), capsys=capsys)
    assert code == 1, err
    assert (
        f"cell 1 (id {cell_id}, `total = 1 / 0  # oops`) failed: ZeroDivisionError: division by zero"
        in err
    ), err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
