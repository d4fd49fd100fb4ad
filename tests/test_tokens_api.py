"""Token labels on the real server, and one wording for a wrong secret on every route."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from conftest import RunningServer

from easytensor_jupyter.inference.api.auth import UNKNOWN_CREDENTIAL


def _tokens(server: RunningServer, model_id: str) -> dict[str, dict[str, Any]]:
    listed = requests.get(
        f"{server.url}/v1/models/{model_id}/tokens", headers=server.admin, timeout=10
    )
    assert listed.status_code == 200, listed.text
    return {t["id"]: t for t in listed.json()["tokens"]}


def test_tokens_carry_where_they_were_made(
    server: RunningServer, tiny_model: dict[str, Any]
) -> None:
    model_id = tiny_model["id"]
    url = f"{server.url}/v1/models/{model_id}/tokens"
    labelled = requests.post(
        url, json={"label": "  notebook demo.ipynb, cell 4 "}, headers=server.admin, timeout=10
    )
    assert labelled.status_code == 201, labelled.text
    made = labelled.json()
    assert made["label"] == "notebook demo.ipynb, cell 4" and made["created_at"]
    bare = requests.post(url, headers=server.admin, timeout=10)
    assert bare.status_code == 201 and bare.json()["label"] is None
    listed = _tokens(server, model_id)
    assert listed[made["id"]]["label"] == "notebook demo.ipynb, cell 4"
    assert listed[bare.json()["id"]]["label"] is None
    upload_made = [t for t in listed.values() if t["label"] == "upload of v1"]
    assert len(upload_made) == 1, listed
    assert all("token" not in t for t in listed.values())


@pytest.mark.parametrize("label", ["x" * 201, "line\nbreak", "\x1b[31mred"])
def test_a_bad_label_is_refused_plainly(
    server: RunningServer, tiny_model: dict[str, Any], label: str
) -> None:
    answer = requests.post(
        f"{server.url}/v1/models/{tiny_model['id']}/tokens",
        json={"label": label},
        headers=server.admin,
        timeout=10,
    )
    assert answer.status_code == 422, answer.text
    assert "label" in answer.text


def test_a_wrong_secret_reads_the_same_on_every_route(
    server: RunningServer, tiny_model: dict[str, Any]
) -> None:
    predict = f"{server.url}/v1/models/{tiny_model['id']}/predict"
    body = {"instances": ["hi"]}
    answers = [
        requests.post(
            f"{server.url}/query/", json=body, headers={"accessToken": "wrong"}, timeout=10
        ),
        requests.post(
            f"{server.url}/query/", json=body, headers={"accessToken": "et_q_nope"}, timeout=10
        ),
        requests.post(
            predict, json=body, headers={"Authorization": "Bearer et_q_nope"}, timeout=10
        ),
        requests.post(predict, json=body, headers={"Authorization": "Bearer wrong"}, timeout=10),
        requests.get(
            f"{server.url}/v1/models", headers={"Authorization": "Bearer wrong"}, timeout=10
        ),
    ]
    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["message"] == UNKNOWN_CREDENTIAL
    assert "invalid API key" not in UNKNOWN_CREDENTIAL
