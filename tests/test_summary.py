"""The deploy summary's curl command must work as pasted into a POSIX shell."""

from __future__ import annotations

import json
import shlex

from easytensor_jupyter.client import UploadResult
from easytensor_jupyter.summary import DeploySummary, curl_command

ENDPOINT = "http://127.0.0.1:8765/v1/models/m-1/predict"


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


def test_summary_text_mentions_unchanged() -> None:
    result = UploadResult(id="m-1", name="M", version=3, query_token=None, unchanged=True)
    summary = DeploySummary.from_upload(result, ENDPOINT, "hello")
    assert summary.text().startswith("Unchanged: M is still version 3")
    assert "query token" not in summary.text()
    assert repr(summary) == "<EasyTensor deployment m-1 v3>"
