"""The input editors (text, file, JSON) behind one mode switch.

Only the editor of the current mode is in the widget tree, so the page holds exactly one
``.easytensor-input textarea`` and a browser test or a screen reader finds the right box.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as widgets

from easytensor_jupyter.instances import encode_instance
from easytensor_jupyter.widgets._render import json_status_html
from easytensor_jupyter.widgets._state import (
    MODE_LABELS,
    InputError,
    InputMode,
    Query,
    file_query,
    format_size,
    image_format,
    json_query,
    parse_json,
    text_query,
)

__all__ = ["JSON_ROWS", "InputEditor", "close_tree", "fitted_rows"]

_BOX = {"width": "100%", "height": "7em"}
JSON_ROWS = (4, 30)


def fitted_rows(text: str) -> int:
    """Rows that show the whole JSON value (within bounds), so a pretty sample is not cut off."""
    low, high = JSON_ROWS
    return max(low, min(high, text.count("\n") + 2))


class InputEditor:
    """Holds the current input in whichever form fits the model and builds the ``Query`` to send."""

    def __init__(self, mode: InputMode, on_change: Callable[[], None] | None = None) -> None:
        self._on_change = on_change
        self._file: tuple[bytes, str | None, str | None] | None = None
        self.mode_picker = widgets.ToggleButtons(
            options=[(label, key) for key, label in MODE_LABELS.items()],
            value=mode,
            tooltips=["Send text", "Send a file as bytes", "Send one JSON value"],
            style={"button_width": "64px"},
        )
        self.mode_picker.add_class("easytensor-mode")
        self.text = widgets.Textarea(
            placeholder="Type the text to send", layout=widgets.Layout(**_BOX)
        )
        self.text.add_class("easytensor-input-text")
        self.json_text = widgets.Textarea(
            placeholder='One JSON value, e.g. {"x": [1, 2, 3]}',
            rows=JSON_ROWS[0],
            layout=widgets.Layout(width="100%"),
        )
        self.json_text.add_class("easytensor-input-json")
        self.json_status = widgets.HTML()
        self.upload = widgets.FileUpload(description="Choose file", multiple=False)
        self.upload.add_class("easytensor-input-file")
        self.file_info = widgets.HTML("No file chosen.")
        self.preview = widgets.Image(
            layout=widgets.Layout(max_width="240px", max_height="240px", display="none")
        )
        self._editors: dict[InputMode, widgets.Widget] = {
            "text": self.text,
            "json": widgets.VBox([self.json_text, self.json_status]),
            "file": widgets.VBox(
                [widgets.HBox([self.upload, self.file_info]), self.preview],
            ),
        }
        self.body = widgets.Box(
            [self._editors[mode]], layout=widgets.Layout(width="100%", flex_flow="column")
        )
        self.widget = widgets.VBox([self.mode_picker, self.body])
        self.widget.add_class("easytensor-input")

        self.mode_picker.observe(self._mode_changed, names="value")
        self.text.observe(self._changed, names="value")
        self.json_text.observe(self._json_changed, names="value")
        self.upload.observe(self._uploaded, names="value")

    @property
    def mode(self) -> InputMode:
        mode: InputMode = self.mode_picker.value
        return mode

    @mode.setter
    def mode(self, mode: InputMode) -> None:
        self.mode_picker.value = mode

    def query(self) -> Query:
        """The input as it would be sent; ``InputError`` says what to fix."""
        if self.mode == "text":
            return text_query(self.text.value)
        if self.mode == "json":
            return json_query(self.json_text.value)
        data, name, declared = self._file or (None, None, None)
        return file_query(data, name, declared)

    def load_value(self, value: Any) -> None:
        """Fill the editor that fits a native value (a sample input), without switching modes."""
        if isinstance(value, str):
            self.text.value = value
        elif isinstance(value, bytes | bytearray):
            self._set_file(bytes(value), None, None)
        elif value is not None:
            self.json_text.value = json.dumps(encode_instance(value), indent=2, ensure_ascii=False)

    def load(self, query: Query) -> None:
        """Put a past query back, in its own mode."""
        if query.mode == "text":
            self.text.value = str(query.value)
        elif query.mode == "json":
            self.json_text.value = json.dumps(
                encode_instance(query.value), indent=2, ensure_ascii=False
            )
        else:
            self._set_file(query.data or b"", query.filename, query.content_type)
        self.mode = query.mode

    def close(self) -> None:
        for editor in self._editors.values():
            close_tree(editor)

    def _set_file(self, data: bytes, name: str | None, content_type: str | None) -> None:
        self._file = (data, name, content_type)
        if self.upload.value:
            self.upload.value = ()
        label = name or "Sample input"
        self.file_info.value = f"{escape(label)} ({format_size(len(data))})"
        fmt = image_format(data)
        if fmt is not None:
            self.preview.format = fmt
            self.preview.value = data
            self.preview.layout.display = None
        else:
            self.preview.value = b""
            self.preview.layout.display = "none"
        self._changed()

    def _uploaded(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        entry = files[-1]
        self._file = None
        self._set_file(bytes(entry["content"]), str(entry["name"]), str(entry.get("type") or ""))

    def _mode_changed(self, change: dict[str, Any]) -> None:
        old, new = change["old"], change["new"]
        if old == "text" and new == "json" and not self.json_text.value.strip():
            self.json_text.value = json.dumps(self.text.value, ensure_ascii=False)
        elif old == "json" and new == "text" and not self.text.value.strip():
            try:
                value = parse_json(self.json_text.value)
            except InputError:
                value = None
            if isinstance(value, str):
                self.text.value = value
        self.body.children = [self._editors[new]]
        self._changed()

    def _json_changed(self, change: dict[str, Any]) -> None:
        text = str(change["new"])
        self.json_text.rows = fitted_rows(text)
        error: InputError | None = None
        if text.strip():
            try:
                parse_json(text)
            except InputError as exc:
                error = exc
        self.json_status.value = json_status_html(text, error) if text.strip() else ""
        self._changed()

    def _changed(self, change: dict[str, Any] | None = None) -> None:
        if self._on_change is not None:
            self._on_change()


def close_tree(widget: widgets.Widget) -> None:
    """Close a widget and everything inside it, so no comm outlives the panel."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()
