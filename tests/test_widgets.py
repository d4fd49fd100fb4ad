"""The query panel's logic and widgets, without a kernel or a server.

ipywidgets instantiate fine in plain Python (no comm is opened without a kernel), so the
editors, the history list and the renderers are driven here directly; everything that talks to
a server is in test_widgets_server.py against the real one.
"""

from __future__ import annotations

import base64
import json
import shlex
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets
import pytest

from easytensor_jupyter.client import EasyTensorError
from easytensor_jupyter.token_keeper import KeptToken, TokenKeeper, mask
from easytensor_jupyter.widgets._curl import curl_command, predict_url
from easytensor_jupyter.widgets._history import HistoryView
from easytensor_jupyter.widgets._inputs import JSON_ROWS, InputEditor, fitted_rows
from easytensor_jupyter.widgets._render import (
    MAX_ANSWER_CHARS,
    answer_html,
    error_html,
    error_summary,
    history_html,
    json_status_html,
    latency_html,
)
from easytensor_jupyter.widgets._state import (
    HISTORY_LIMIT,
    History,
    HistoryEntry,
    InputError,
    Query,
    file_query,
    format_latency,
    format_size,
    image_format,
    json_query,
    mode_for_kind,
    parse_json,
    sample_input,
    text_query,
    version_info,
    version_options,
)
from easytensor_jupyter.widgets._token import TokenRow

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
ENDPOINT = "http://127.0.0.1:8765/v1/models/m_1/predict"


def _upload_value(name: str, data: bytes, kind: str) -> tuple[dict[str, Any], ...]:
    return (
        {
            "name": name,
            "type": kind,
            "size": len(data),
            "content": memoryview(data),
            "last_modified": datetime(2024, 1, 1, tzinfo=timezone.utc),
        },
    )


def _model(default: int = 2, **first: Any) -> dict[str, Any]:
    return {
        "id": "m_1",
        "name": "News",
        "default_version": default,
        "versions": [
            {"version": 1, "input_kind": "text", "sample": None, "status": "idle", **first},
            {
                "version": 2,
                "input_kind": "image",
                "sample": {"input": {"b64": base64.b64encode(PNG).decode()}, "output": 3},
                "status": "ready",
            },
            {"version": 3, "input_kind": "json", "sample": None, "status": "failed"},
        ],
    }


# -- input parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "mode"),
    [
        ("text", "text"),
        ("bytes", "file"),
        ("image", "file"),
        ("json", "json"),
        ("unknown", "text"),
        (None, "text"),
    ],
)
def test_mode_follows_input_kind(kind: str | None, mode: str) -> None:
    assert mode_for_kind(kind) == mode


def test_text_query_keeps_text_as_is_and_refuses_blank() -> None:
    query = text_query("  Stocks rally\n")
    assert (query.mode, query.value) == ("text", "  Stocks rally\n")
    with pytest.raises(InputError, match="Type some text"):
        text_query(" \n\t")


def test_json_query_parses_one_value_and_restores_bytes() -> None:
    assert json_query('{"x": [1, 2.5, null]}').value == {"x": [1, 2.5, None]}
    query = json_query('{"image": {"b64": "AAEC"}, "n": 1}')
    assert query.value == {"image": b"\x00\x01\x02", "n": 1}


def test_json_error_names_line_and_column() -> None:
    with pytest.raises(InputError) as info:
        parse_json('{\n  "a": 1,\n  "b" 2\n}')
    assert str(info.value) == "Invalid JSON. Line 3, column 7: Expecting ':' delimiter."
    with pytest.raises(InputError, match="Line 1, column 4: Expecting value"):
        parse_json("[1,")
    with pytest.raises(InputError, match="Enter one JSON value"):
        parse_json("   ")
    with pytest.raises(InputError, match=r"input\.img\.b64 is not valid base64"):
        parse_json('{"img": {"b64": "%%%"}}')


def test_json_status_points_at_the_broken_column() -> None:
    text = '{"a": 1,\n "b" 2}'
    with pytest.raises(InputError) as info:
        parse_json(text)
    html = json_status_html(text, info.value)
    assert "Line 2, column 6" in html
    assert " &quot;b&quot; 2}\n     ^</pre>" in html
    assert "Valid JSON" in json_status_html("[1]", None)


def test_file_query_picks_a_content_type() -> None:
    with pytest.raises(InputError, match="Choose a file"):
        file_query(None, None)
    assert file_query(PNG, "a.png").content_type == "image/png"
    assert file_query(b"\xff\xd8\xff\xe0rest", None).content_type == "image/jpeg"
    assert file_query(b"abc", "x.jpg", "image/jpeg").content_type == "image/jpeg"
    assert file_query(b"abc", "x.bin", "application/zip").content_type == (
        "application/octet-stream"
    )
    assert image_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert image_format(b"plain") is None


def test_query_summaries_are_short_and_readable() -> None:
    assert text_query("hello").summary() == '"hello"'
    assert len(text_query("word " * 100).summary()) == 80
    assert file_query(PNG, "cat.png").summary() == "cat.png (32 B)"
    assert file_query(b"x" * 2500, None).summary() == "sample input (2.5 kB)"
    assert json_query('{"b": {"b64": "AAEC"}}').summary() == '{"b": {"b64": "AAEC"}}'


def test_formatting_helpers() -> None:
    assert format_size(999) == "999 B"
    assert format_size(1_500_000) == "1.5 MB"
    assert format_latency(3.14159) == "3.1 ms"
    assert format_latency(42.4) == "42 ms"
    assert format_latency(2500) == "2.50 s"
    assert latency_html(42.4, 2) == "42 ms \u00b7 v2"


# -- model metadata -----------------------------------------------------------------------------
def test_version_picker_labels_newest_first_with_default_marked() -> None:
    assert version_options(_model()) == [("v3 (failed)", 3), ("v2 (default)", 2), ("v1", 1)]
    assert version_options(_model(default=3))[0] == ("v3 (default, failed)", 3)
    assert version_options({"versions": []}) == []


def test_sample_input_is_decoded_from_the_version() -> None:
    model = _model()
    assert version_info(model, None) == model["versions"][1]
    assert sample_input(version_info(model, None)) == PNG
    assert sample_input(version_info(model, 1)) is None
    assert sample_input({"sample": {"input": "Stocks", "output": "Business"}}) == "Stocks"
    assert sample_input(None) is None


# -- answers and errors -------------------------------------------------------------------------
def test_short_string_answer_is_a_large_escaped_label() -> None:
    html = answer_html("<b>Sports</b>")
    assert 'class="easytensor-label"' in html
    assert "&lt;b&gt;Sports&lt;/b&gt;" in html
    assert "<b>" not in html
    assert "easytensor-label" in answer_html(0.93)


def test_structured_answer_is_pretty_escaped_json() -> None:
    html = answer_html({"label": "<script>x</script>", "scores": [0.1, 0.9]})
    assert "<pre" in html and "easytensor-label" not in html
    assert "&quot;label&quot;: &quot;&lt;script&gt;x&lt;/script&gt;&quot;" in html
    assert "&quot;scores&quot;: [\n    0.1," in html
    long = answer_html("a sentence that is much too long to be a label " * 3)
    assert "<pre" in long
    assert "<pre" in answer_html("two\nlines")


def test_huge_answer_is_cut_with_a_note() -> None:
    html = answer_html(list(range(20_000)))
    assert f"Showing the first {MAX_ANSWER_CHARS:,} of" in html
    assert len(html) < MAX_ANSWER_CHARS + 2000


def test_model_error_shows_status_message_and_traceback_tail() -> None:
    exc = EasyTensorError(
        "The model raised ValueError: <bad> input",
        status=422,
        code="model_error",
        detail={"traceback": 'File "model.py", line 9, in predict_single\nValueError: <bad>'},
    )
    html = error_html(exc)
    assert "HTTP 422 \u00b7 model_error" in html
    assert "The model raised ValueError: &lt;bad&gt; input" in html
    assert 'class="easytensor-traceback"' in html
    assert "line 9, in predict_single\nValueError: &lt;bad&gt;</pre>" in html
    assert error_summary(exc).startswith("HTTP 422 model_error: The model raised")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            EasyTensorError("prediction timed out after 30 s", status=504, code="timeout"),
            ["HTTP 504 \u00b7 timeout", "timed out after 30 s", "server stopped it"],
        ),
        (
            EasyTensorError("worker exited", status=502, code="worker_crashed"),
            ["HTTP 502 \u00b7 worker_crashed", "The next query starts a fresh one"],
        ),
        (
            EasyTensorError("invalid token", status=401, code="unauthorized"),
            ["HTTP 401 \u00b7 unauthorized", "invalid token"],
        ),
        (
            EasyTensorError("Cannot reach the EasyTensor server at http://x: is it running?"),
            ["No answer", "Cannot reach the EasyTensor server"],
        ),
        (InputError("Choose a file first."), ["Check the input", "Choose a file first."]),
        (RuntimeError("boom"), ["Unexpected error: RuntimeError", "boom"]),
    ],
)
def test_error_box_texts(exc: BaseException, expected: list[str]) -> None:
    html = error_html(exc)
    for text in expected:
        assert text in html
    assert "easytensor-traceback" not in html


# -- history ------------------------------------------------------------------------------------
def _entry(i: int, **kwargs: Any) -> HistoryEntry:
    return HistoryEntry(
        text_query(f"query {i}"), None, 1, answer=f"answer {i}", latency_ms=5.0, **kwargs
    )


def test_history_keeps_the_last_twenty_newest_first() -> None:
    history = History()
    for i in range(HISTORY_LIMIT + 5):
        history.add(_entry(i))
    assert len(history) == HISTORY_LIMIT == history.limit
    assert [e.query.value for e in history][:2] == ["query 24", "query 23"]
    assert history[HISTORY_LIMIT - 1].query.value == "query 5"


def test_history_view_rows_rerun_the_right_entry() -> None:
    picked: list[HistoryEntry] = []
    view = HistoryView(picked.append)
    assert "queries you run show here" in view.title.value
    history = History()
    for i in range(HISTORY_LIMIT + 3):
        history.add(_entry(i))
    view.update(history)
    assert len(view.rows.children) == len(view.buttons) == HISTORY_LIMIT
    assert "20 queries, the last 20 are kept" in view.title.value
    view.buttons[3].click()
    assert picked == [history[3]]


def test_history_row_text() -> None:
    ok = history_html(_entry(1))
    assert "&quot;query 1&quot;" in ok and "answer 1" in ok and "5.0 ms" in ok and "v1" in ok
    failed = history_html(HistoryEntry(text_query("x"), 2, 2, error="HTTP 422 model_error: <boom>"))
    assert "HTTP 422 model_error: &lt;boom&gt;" in failed and "v2" in failed


# -- curl ---------------------------------------------------------------------------------------
def _argv(command: str) -> list[str]:
    return shlex.split(command.replace("\\\n", " "))


def test_curl_text_survives_shell_quoting() -> None:
    text = 'It\'s "$HOME" `date` @file\nline two'
    command = curl_command(ENDPOINT, text_query(text))
    argv = _argv(command)
    assert argv[argv.index("--data-raw") + 1] == text
    assert "Content-Type: text/plain" in argv
    assert '-H "Authorization: Bearer $EASYTENSOR_TOKEN"' in command


def test_curl_json_body_and_given_token() -> None:
    query = json_query('{"img": {"b64": "AAEC"}, "name": "O\'Brien"}')
    argv = _argv(curl_command(ENDPOINT, query, token="et_q_abc"))
    body = json.loads(argv[argv.index("--data-raw") + 1])
    assert body == {"instances": [{"img": {"b64": "AAEC"}, "name": "O'Brien"}]}
    assert "Authorization: Bearer et_q_abc" in argv
    assert "Content-Type: application/json" in argv


def test_curl_file_and_version() -> None:
    command = curl_command(ENDPOINT, file_query(PNG, "my cat.png"), version=1)
    argv = _argv(command)
    assert argv[:4] == ["curl", "-sS", "-X", "POST"]
    assert argv[4] == predict_url(ENDPOINT, 1) == ENDPOINT + "?version=1"
    assert f"'{ENDPOINT}?version=1'" in command
    assert argv[argv.index("--data-binary") + 1] == "@my cat.png"
    assert "Content-Type: image/png" in argv
    placeholder = _argv(curl_command(ENDPOINT, None))
    assert placeholder[-1] == '{"instances": [...]}'


# -- the input editor ---------------------------------------------------------------------------
def _visible(editor: InputEditor) -> widgets.Widget:
    (child,) = editor.body.children
    return child


def test_editor_text_mode_and_switch_to_json_carries_the_text() -> None:
    changes: list[int] = []
    editor = InputEditor("text", on_change=lambda: changes.append(1))
    assert "easytensor-input" in editor.widget._dom_classes
    assert _visible(editor) is editor.text
    editor.text.value = "Stocks rally"
    assert editor.query() == Query("text", "Stocks rally")
    editor.mode = "json"
    assert editor.json_text.value == '"Stocks rally"'
    assert editor.query() == Query("json", "Stocks rally")
    assert editor.json_text in _visible(editor).children
    assert changes


def test_editor_json_mode_reports_errors_live() -> None:
    editor = InputEditor("json")
    editor.json_text.value = '{"x": [1, 2}'
    assert "Line 1, column 12" in editor.json_status.value
    with pytest.raises(InputError, match="Line 1, column 12"):
        editor.query()
    editor.json_text.value = '{"x": [1, 2]}'
    assert "Valid JSON" in editor.json_status.value
    assert editor.query().value == {"x": [1, 2]}


def test_editor_file_upload_with_image_preview() -> None:
    editor = InputEditor("file")
    with pytest.raises(InputError, match="Choose a file"):
        editor.query()
    editor.upload.value = _upload_value("cat.png", PNG, "image/png")
    query = editor.query()
    assert (query.data, query.filename, query.content_type) == (PNG, "cat.png", "image/png")
    assert editor.preview.value == PNG and editor.preview.format == "png"
    assert editor.preview.layout.display is None
    assert "cat.png (32 B)" in editor.file_info.value
    editor.upload.value = _upload_value("notes.bin", b"\x00\x01", "")
    assert editor.query().content_type == "application/octet-stream"
    assert editor.preview.layout.display == "none"


def test_editor_prefill_from_samples_and_load_past_queries() -> None:
    editor = InputEditor("file")
    editor.load_value(PNG)
    assert editor.query().data == PNG
    assert "Sample input (32 B)" in editor.file_info.value
    editor.load_value({"x": [1, 2]})
    assert json.loads(editor.json_text.value) == {"x": [1, 2]}
    editor.load_value("Liverpool win")
    assert (editor.text.value, editor.mode) == ("Liverpool win", "file")

    editor.load(Query("json", {"b": b"\x00"}))
    assert editor.mode == "json"
    assert json.loads(editor.json_text.value) == {"b": {"b64": "AA=="}}
    editor.load(text_query("again"))
    assert (editor.mode, editor.query().value) == ("text", "again")
    editor.load(file_query(b"raw", "r.bin"))
    assert editor.query() == file_query(b"raw", "r.bin")
    editor.close()


def test_json_box_fits_its_content() -> None:
    editor = InputEditor("json")
    assert editor.json_text.rows == JSON_ROWS[0]
    sample = {"features": {f"f{i}": i for i in range(12)}, "tags": ["a", "b"]}
    editor.load_value(sample)
    lines = editor.json_text.value.count("\n") + 1
    assert lines > 12 and editor.json_text.rows >= lines
    assert editor.json_text.layout.height is None
    editor.json_text.value = "[1, 2]"
    assert editor.json_text.rows == JSON_ROWS[0]
    editor.json_text.value = "\n" * 500
    assert editor.json_text.rows == JSON_ROWS[1]
    assert fitted_rows("") == JSON_ROWS[0]


TOKEN = "et_q_" + "AbCd" + "x" * 35 + "wXyZ"


def _state_of(widget: widgets.Widget) -> str:
    """Everything the widget tree would save into a notebook's widget state."""
    found = []
    for child in [widget, *getattr(widget, "children", ())]:
        found.append(json.dumps(child.get_state(), default=str))
        if child is not widget:
            found.append(_state_of(child))
    return "\n".join(found)


def test_token_row_is_masked_until_shown(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path))
    row = TokenRow("m_1", TOKEN)
    assert mask(TOKEN) == "et_q_AbCd\u2026wXyZ"
    assert "et_q_AbCd\u2026wXyZ" in row.masked.value
    assert TOKEN not in _state_of(row.widget)
    assert row.value.layout.display == "none" and row.hint.value == ""
    row.show.value = True
    assert row.value.value == TOKEN and row.value.layout.display is None
    assert row.show.description == "Hide"
    row.hide()
    assert row.value.value == "" and TOKEN not in _state_of(row.widget)
    assert "easytensor-token-copy" in row.copy.value and TOKEN not in row.copy.value


def test_token_row_hides_itself_without_a_token() -> None:
    row = TokenRow("m_1", None)
    assert row.widget.layout.display == "none"
    row.show.value = True
    assert row.value.value == ""


def test_token_row_tells_the_shell_command_for_a_kept_token(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EASYTENSOR_HOME", str(tmp_path))
    TokenKeeper().put(KeptToken("m_1", "notebook", "tok_1", TOKEN, "notebook a.ipynb, cell 1"))
    row = TokenRow("m_1", TOKEN)
    assert "export EASYTENSOR_TOKEN=$(easytensor tokens show m_1)" in row.hint.value
    assert TOKEN not in row.hint.value
