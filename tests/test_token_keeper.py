"""Kept query tokens against a real server: one per model and origin, replaced once revoked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningServer

from easytensor_jupyter.client import Client
from easytensor_jupyter.token_keeper import TokenKeeper, mask, notebook_token


@pytest.fixture
def client(server: RunningServer) -> Client:
    return Client(server.url, server.admin_key)


def _active(client: Client, model_id: str) -> list[dict[str, Any]]:
    return [t for t in client.list_tokens(model_id) if not t["revoked"]]


def test_one_token_per_model_and_origin_across_keepers(
    tmp_path: Path, client: Client, tiny_model: dict[str, Any]
) -> None:
    model_id = tiny_model["id"]
    first, reused = TokenKeeper(tmp_path).obtain(
        client, model_id, origin="notebook:a.ipynb", label="notebook a.ipynb, cell 2"
    )
    assert not reused and first.token.startswith("et_q_")
    again, reused = TokenKeeper(tmp_path).obtain(
        client, model_id, origin="notebook:a.ipynb", label="notebook a.ipynb, cell 7"
    )
    assert reused and again.token == first.token and again.label == "notebook a.ipynb, cell 2"
    other, reused = TokenKeeper(tmp_path).obtain(
        client, model_id, origin="notebook:b.ipynb", label="notebook b.ipynb, cell 1"
    )
    assert not reused and other.token != first.token
    labels = {t["id"]: t["label"] for t in _active(client, model_id)}
    assert labels[first.token_id] == "notebook a.ipynb, cell 2"
    assert labels[other.token_id] == "notebook b.ipynb, cell 1"
    path = tmp_path / "query_tokens.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert {t["token_id"] for t in json.loads(path.read_text())["tokens"]} == {
        first.token_id,
        other.token_id,
    }
    assert client.predict(model_id, [[1, 2, 3, 4]], token=again.token).version == 1


def test_a_revoked_token_is_replaced_not_offered(
    tmp_path: Path, client: Client, tiny_model: dict[str, Any]
) -> None:
    keeper = TokenKeeper(tmp_path)
    model_id = tiny_model["id"]
    kept, _ = keeper.obtain(client, model_id, origin="notebook", label="x")
    client.revoke_token(model_id, kept.token_id)
    fresh, reused = keeper.obtain(client, model_id, origin="notebook", label="x")
    assert not reused and fresh.token_id != kept.token_id
    assert TokenKeeper(tmp_path).get(model_id, "notebook") == fresh


def test_a_damaged_file_costs_only_a_new_token(
    tmp_path: Path, client: Client, tiny_model: dict[str, Any]
) -> None:
    (tmp_path / "query_tokens.json").write_text("{broken")
    kept, reused = TokenKeeper(tmp_path).obtain(
        client, tiny_model["id"], origin="notebook", label="x", model_name=tiny_model["name"]
    )
    assert not reused
    assert TokenKeeper(tmp_path).for_model(tiny_model["name"]) == [kept]
    assert TokenKeeper(tmp_path).for_model(tiny_model["id"]) == [kept]


def test_the_kernel_keeps_its_token_when_the_file_is_gone(
    tmp_path: Path, client: Client, tiny_model: dict[str, Any]
) -> None:
    keeper = TokenKeeper(tmp_path)
    kept, _ = keeper.obtain(client, tiny_model["id"], origin="notebook", label="x")
    (tmp_path / "query_tokens.json").unlink()
    again, reused = keeper.obtain(client, tiny_model["id"], origin="notebook", label="x")
    assert reused and again.token == kept.token


def test_notebook_token_labels_and_never_raises(
    tmp_path: Path,
    client: Client,
    tiny_model: dict[str, Any],
    shell: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Result:
        id = tiny_model["id"]
        name = tiny_model["name"]

    shell.run_cell("a = 1", store_history=True)
    shell.run_cell("b = 2", store_history=True)
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/u/work/demo.ipynb")
    token, reused = notebook_token(TokenKeeper(tmp_path), client, Result(), shell)
    assert token is not None and not reused
    labels = [t["label"] for t in _active(client, tiny_model["id"])]
    assert "notebook demo.ipynb, cell 2" in labels
    refused = Client(client.url, "et_admin_wrong", retries=0)
    assert notebook_token(TokenKeeper(tmp_path / "b"), refused, Result(), shell) == (None, False)
    assert "Deployed, but no query token could be made" in capsys.readouterr().out


def test_mask_shows_too_little_to_use() -> None:
    token = "et_q_" + "abcdefgh" * 5 + "xyz"
    assert mask(token) == "et_q_abcd\u2026hxyz"
    assert mask("et_q_short") == "et_q_\u2026"
