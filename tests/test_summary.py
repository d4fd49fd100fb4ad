"""The deploy summary: the token masked, and a curl that fits the model's input and runs."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from typing import Any

import pytest
import torch
from conftest import RunningServer

from easytensor_jupyter.client import UploadResult
from easytensor_jupyter.packaging import NO_SAMPLE
from easytensor_jupyter.summary import DeploySummary, curl_command, hinted_input

ENDPOINT = "http://127.0.0.1:8765/v1/models/m-1/predict"
TOKEN = "et_q_" + "Q" * 39 + "tail"
RESULT = UploadResult(id="m-1", name="M", version=1, query_token=None)


class Lists(torch.nn.Module):
    def predict_single(self, features: list[float]) -> float:
        return sum(features)


class Texts(torch.nn.Module):
    def predict_single(self, text: str) -> str:
        return text


class Images(torch.nn.Module):
    def predict_single(self, image: bytes) -> int:
        return len(image)


class Unhinted(torch.nn.Module):
    def predict_single(self, x):  # type: ignore[no-untyped-def]
        return x


class Stringly(torch.nn.Module):
    def predict_single(self, x: dict[str, float]) -> Any:
        return x


def test_text_is_sent_as_plain_text_and_quoted() -> None:
    argv = shlex.split(curl_command(ENDPOINT, "it's a $HOME `test`", "tok"))
    assert argv[argv.index("--data-binary") + 1] == "it's a $HOME `test`"
    assert "Authorization: Bearer tok" in argv and "Content-Type: text/plain" in argv


def test_json_and_bytes() -> None:
    argv = shlex.split(curl_command(ENDPOINT, {"x": [1, 2], "raw": b"\x00"}))
    assert json.loads(argv[argv.index("-d") + 1]) == {
        "instances": [{"x": [1, 2], "raw": {"b64": "AA=="}}]
    }
    assert "Authorization: Bearer $EASYTENSOR_TOKEN" in argv
    png = shlex.split(curl_command(ENDPOINT, b"\x89PNG\r\n\x1a\n"))
    assert "@input.png" in png and "Content-Type: image/png" in png


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        (Lists(), ("json", "list[float]")),
        (Texts(), ("text", "str")),
        (Images(), ("bytes", "bytes")),
        (Unhinted(), ("unknown", None)),
        (Stringly(), ("json", "dict[str, float]")),
    ],
)
def test_the_input_kind_comes_from_the_type_hint(model: Any, kind: tuple[str, Any]) -> None:
    assert hinted_input(model) == kind


def test_without_a_sample_a_list_model_gets_json_not_text() -> None:
    summary = DeploySummary.from_upload(RESULT, ENDPOINT, NO_SAMPLE, model=Lists())
    assert summary.curl is not None and "text/plain" not in summary.curl
    assert "Content-Type: application/json" in summary.curl
    assert "replace INPUT with what predict_single takes, one list[float], in JSON" in (
        summary.text()
    )
    texts = DeploySummary.from_upload(RESULT, ENDPOINT, NO_SAMPLE, model=Texts())
    assert texts.curl is not None and "Content-Type: text/plain" in texts.curl
    assert texts.send_note is None


def test_without_sample_or_hint_it_says_what_to_send() -> None:
    summary = DeploySummary.from_upload(RESULT, ENDPOINT, NO_SAMPLE, model=Unhinted())
    assert summary.curl is None
    text = summary.text()
    assert 'to query:    POST {"instances": [INPUT]} as application/json' in text
    assert "--sample" in text and "curl -s" not in text


def test_the_token_is_masked_in_the_printout_but_kept_on_the_object() -> None:
    summary = DeploySummary.from_upload(
        RESULT, ENDPOINT, "hello", token=TOKEN, token_reused=True, token_kept=True
    )
    text = summary.text()
    assert TOKEN not in text and TOKEN not in repr(summary)
    assert "query token: et_q_QQQQ\u2026tail (the one this notebook already had;" in text
    assert "export EASYTENSOR_TOKEN=$(easytensor tokens show m-1)" in text
    assert summary.token == TOKEN
    assert summary.curl is not None and TOKEN not in summary.curl
    assert '"Authorization: Bearer $EASYTENSOR_TOKEN"' in summary.curl


def test_summary_text_mentions_unchanged() -> None:
    result = UploadResult(id="m-1", name="M", version=3, query_token=None, unchanged=True)
    summary = DeploySummary.from_upload(result, ENDPOINT, "hello")
    assert summary.text().startswith("Unchanged: M is still version 3")
    assert "query token" not in summary.text()
    assert repr(summary) == "<EasyTensor deployment m-1 v3>"


def _run_curl(command: str, token: str) -> Any:
    env = dict(os.environ, EASYTENSOR_TOKEN=token)
    done = subprocess.run(
        ["bash", "-c", command + " -w '\\n%{http_code}'"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    body, status = done.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


def test_the_printed_curl_runs_against_a_real_server(
    server: RunningServer, tiny_model: dict[str, Any]
) -> None:
    """Tiny answers lists with numbers and texts with a dict: both printed commands work."""
    endpoint = f"{server.url}/v1/models/{tiny_model['id']}/predict"
    token = tiny_model["query_token"]
    listed = DeploySummary.from_upload(RESULT, endpoint, NO_SAMPLE, model=Lists())
    assert listed.curl is not None
    status, body = _run_curl(listed.curl.replace("INPUT", "[1, 2, 3, 4]"), token)
    assert status == 200, body
    assert len(body["predictions"][0]) == 2
    sampled = DeploySummary.from_upload(RESULT, endpoint, "it's here", model=Texts())
    assert sampled.curl is not None
    status, body = _run_curl(sampled.curl, token)
    assert status == 200 and body["predictions"][0]["text"] == "it's here"
