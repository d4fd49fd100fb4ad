"""The query panel against the real inference server, with real models uploaded by the seed API.

Each test drives the panel the way a user does (set the input, click Predict) and compares what
the panel shows with what the live model answers in this process.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import sys
import textwrap
import time
import types
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import torch

import easytensor
from easytensor_jupyter.client import Client
from easytensor_jupyter.widgets import QueryPanel
from easytensor_jupyter.widgets._render import answer_html

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)

ECHO_SOURCE = textwrap.dedent(
    '''
    """Echoes text; misbehaves on purpose for some inputs."""
    import time

    import torch
    from torch import nn


    class Echo(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Linear(1, 1)

        def predict_single(self, input):
            if "boom" in input:
                raise ValueError("cannot handle <boom> inputs")
            if input.startswith("sleep"):
                time.sleep(1.5)
            return {"echo": input, "length": len(input), "scale": round(self.scale.weight.detach().item(), 4)}
    '''
)

JSON_SOURCE = textwrap.dedent(
    '''
    """Weighted sum of a JSON list."""
    import torch
    from torch import nn


    class Summer(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.tensor(2.0))

        def predict_single(self, input):
            total = self.weight.detach().item() * sum(input["x"])
            return {"total": total, "n": len(input["x"])}
    '''
)

BYTES_SOURCE = textwrap.dedent(
    '''
    """Describes the bytes it gets."""
    import torch
    from torch import nn


    class Sizer(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(1, 1)

        def predict_single(self, input):
            return {"size": len(input), "png": input[:4] == b"\\x89PNG"}
    '''
)


_RUN = uuid.uuid4().hex[:8]


def _load_class(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"_panel_test_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.fixture
def client(seed_api: Any) -> Iterator[Client]:
    client = Client(seed_api.url, seed_api.admin_key)
    try:
        yield client
    finally:
        client.close()


def _upload(tmp_path: Path, name: str, source: str, cls: str, sample: Any, **kw: Any) -> Any:
    path = tmp_path / f"{cls.lower()}.py"
    path.write_text(source, encoding="utf-8")
    torch.manual_seed(0)
    model = _load_class(path, cls)()
    for tweak in kw.pop("tweaks", []):
        tweak(model)
    model_id, token = easytensor.pytorch.upload_model(
        f"{name} {_RUN}", model, path, sample=sample, quiet=True
    )
    return types.SimpleNamespace(id=model_id, token=token, model=model, path=path)


def _predict(panel: QueryPanel, timeout: float = 60.0) -> None:
    panel.predict_button.click()
    assert panel.wait(timeout), "the prediction did not finish in time"


@pytest.fixture
def quickstart() -> Iterator[Any]:
    sys.path.insert(0, str(QUICKSTART))
    try:
        yield importlib.import_module("train").train
    finally:
        sys.path.remove(str(QUICKSTART))


def test_text_model_answer_matches_the_live_model(
    tmp_path: Path, client: Client, quickstart: Any
) -> None:
    model = quickstart()
    model_id, _ = easytensor.pytorch.upload_model(
        f"News {_RUN}", model, QUICKSTART / "model.py", sample="Liverpool win the cup", quiet=True
    )
    panel = QueryPanel(model_id, client=client)
    assert panel.inputs.mode == "text"
    assert panel.inputs.text.value == "Liverpool win the cup"
    assert panel.version_picker.options == (("v1 (default)", 1),)
    assert "$EASYTENSOR_TOKEN" in panel.curl.value

    for headline in ("Stocks rally as inflation cools", "Astronomers find a new planet"):
        panel.inputs.text.value = headline
        _predict(panel)
        assert panel.answer.value == answer_html(model.predict_single(headline))
        assert "easytensor-label" in panel.answer.value
        assert panel.latency.value.endswith("ms \u00b7 v1")
        assert panel.error.layout.display == "none"
        assert headline in panel.curl.value
    assert [e.query.value for e in panel.history] == [
        "Astronomers find a new planet",
        "Stocks rally as inflation cools",
    ]

    panel.history_view.buttons[1].click()
    assert panel.wait(60)
    assert panel.inputs.text.value == "Stocks rally as inflation cools"
    assert len(panel.history) == 3
    assert panel.history[0].answer == model.predict_single("Stocks rally as inflation cools")
    panel.close()


def test_model_error_shows_the_traceback_tail(tmp_path: Path, client: Client) -> None:
    echo = _upload(tmp_path, "Echo", ECHO_SOURCE, "Echo", "hello")
    panel = QueryPanel(echo.id, client=client)
    panel.inputs.text.value = "boom goes the model"
    _predict(panel)
    html = panel.error.value
    assert panel.error.layout.display is None
    assert "HTTP 422 \u00b7 model_error" in html
    assert "easytensor-traceback" in html
    assert "ValueError: cannot handle &lt;boom&gt; inputs" in html
    assert "predict_single" in html
    assert panel.answer.value == ""
    assert panel.history[0].error is not None and "422" in panel.history[0].error

    panel.inputs.text.value = "fine"
    _predict(panel)
    assert panel.error.layout.display == "none"
    assert json.loads(_pre_text(panel.answer.value)) == echo.model.predict_single("fine")


def test_running_state_keeps_the_caller_free(tmp_path: Path, client: Client) -> None:
    echo = _upload(tmp_path, "Slow echo", ECHO_SOURCE, "Echo", "hello")
    panel = QueryPanel(echo.id, client=client)
    panel.inputs.text.value = "sleep a little"
    started = time.monotonic()
    panel.predict_button.click()
    assert time.monotonic() - started < 1.0, "Predict blocked the caller"
    assert panel.busy
    assert panel.predict_button.disabled
    assert panel.predict_button.description == "Running\u2026"
    assert "fa-spinner" in panel.latency.value
    panel.predict()
    assert panel.wait(60)
    assert not panel.predict_button.disabled
    assert panel.predict_button.description == "Predict"
    assert len(panel.history) == 1
    assert json.loads(_pre_text(panel.answer.value))["echo"] == "sleep a little"


def test_version_picker_after_two_uploads(tmp_path: Path, client: Client) -> None:
    first = _upload(tmp_path, "Versioned", ECHO_SOURCE, "Echo", "hello")
    panel = QueryPanel(first.id, client=client)
    assert panel.version_picker.options == (("v1 (default)", 1),)

    def heavier(model: Any) -> None:
        with torch.no_grad():
            model.scale.weight.fill_(2.5)

    second = _upload(tmp_path, "Versioned", ECHO_SOURCE, "Echo", "hello", tweaks=[heavier])
    assert second.id == first.id
    panel.reload()
    assert panel.version_picker.options == (("v2 (default)", 2), ("v1", 1))
    assert panel.version_picker.value == 2
    assert panel.selected_version is None

    panel.inputs.text.value = "which one"
    _predict(panel)
    assert json.loads(_pre_text(panel.answer.value))["scale"] == 2.5
    assert panel.latency.value.endswith("\u00b7 v2")

    panel.version_picker.value = 1
    assert panel.selected_version == 1
    assert "?version=1" in panel.curl.value
    _predict(panel)
    assert json.loads(_pre_text(panel.answer.value)) == first.model.predict_single("which one")
    assert panel.latency.value.endswith("\u00b7 v1")
    assert (panel.history[0].requested_version, panel.history[0].served_version) == (1, 1)

    panel.version_picker.value = 2
    panel.history_view.buttons[0].click()
    assert panel.wait(60)
    assert panel.version_picker.value == 1
    assert panel.history[0].served_version == 1


def test_json_model_prefills_and_predicts(tmp_path: Path, client: Client) -> None:
    summer = _upload(tmp_path, "Summer", JSON_SOURCE, "Summer", {"x": [1, 2, 3]})
    panel = QueryPanel(summer.id, client=client)
    assert panel.inputs.mode == "json"
    assert json.loads(panel.inputs.json_text.value) == {"x": [1, 2, 3]}
    panel.inputs.json_text.value = '{"x": [4, 5,'
    assert "Line 1, column 13" in panel.inputs.json_status.value
    _predict(panel)
    assert "Check the input" in panel.error.value and "Line 1, column 13" in panel.error.value
    assert len(panel.history) == 0

    panel.inputs.json_text.value = '{"x": [4, 5.5]}'
    _predict(panel)
    expected = summer.model.predict_single({"x": [4, 5.5]})
    assert json.loads(_pre_text(panel.answer.value)) == expected
    assert "application/json" in panel.curl.value


def test_bytes_model_uses_the_file_input(tmp_path: Path, client: Client) -> None:
    sizer = _upload(tmp_path, "Sizer", BYTES_SOURCE, "Sizer", PNG)
    panel = QueryPanel(sizer.id, client=client)
    assert panel.inputs.mode == "file"
    assert panel.inputs.upload.accept == "image/*"
    assert panel.inputs.preview.value == PNG
    _predict(panel)
    assert json.loads(_pre_text(panel.answer.value)) == sizer.model.predict_single(PNG)

    data = b"not an image at all"
    panel.inputs.upload.value = (
        {
            "name": "notes.txt",
            "type": "text/plain",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": datetime(2024, 1, 1, tzinfo=timezone.utc),
        },
    )
    assert "@notes.txt" in panel.curl.value
    _predict(panel)
    assert json.loads(_pre_text(panel.answer.value)) == sizer.model.predict_single(data)


def test_query_token_is_used_and_shown(tmp_path: Path, client: Client, seed_api: Any) -> None:
    echo = _upload(tmp_path, "Tokened", ECHO_SOURCE, "Echo", "hello")
    token = client.create_token(echo.id)["token"]
    panel = QueryPanel(echo.id, client=client, token=token)
    assert token not in panel.curl.value and "$EASYTENSOR_TOKEN" in panel.curl.value
    assert token not in panel.token_row.masked.value and token[:9] in panel.token_row.masked.value
    panel.token_row.show.value = True
    assert panel.token_row.value.value == token
    panel.token_row.hide()
    assert panel.token_row.value.value == ""
    _predict(panel)
    assert json.loads(_pre_text(panel.answer.value)) == echo.model.predict_single("hello")

    query_only = Client(seed_api.url, "et_admin_wrong")
    try:
        limited = QueryPanel(echo.id, client=query_only, token=token)
        assert "cannot read the model's details" in unescape(limited.error.value)
        assert limited.version_picker.disabled
        limited.inputs.text.value = "hello"
        _predict(limited)
        assert limited.error.layout.display == "none"

        refused = QueryPanel(echo.id, client=query_only, token="et_q_not_a_token")
        refused.inputs.text.value = "hello"
        _predict(refused)
        assert "HTTP 401" in refused.error.value
    finally:
        query_only.close()


def _pre_text(html: str) -> str:
    """The text inside the answer's <pre>, unescaped."""
    start = html.index(">", html.index("<pre")) + 1
    return unescape(html[start : html.index("</pre>")])
