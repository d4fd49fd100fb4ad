"""The query panel's logic without any widget, so every rule can be tested in plain Python.

A ``Query`` is one input as the panel will send it; the same object feeds the request, the curl
command and the history, so the three never disagree about what was asked.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from easytensor_jupyter.client import Client, Prediction
from easytensor_jupyter.instances import InstanceError, decode_instance, encode_instance

__all__ = [
    "HISTORY_LIMIT",
    "MODE_LABELS",
    "History",
    "HistoryEntry",
    "InputError",
    "InputMode",
    "Query",
    "default_version",
    "describe_json_error",
    "file_query",
    "format_latency",
    "format_size",
    "image_format",
    "json_query",
    "mode_for_kind",
    "parse_json",
    "sample_input",
    "shorten",
    "text_query",
    "version_info",
    "version_options",
]

InputMode = Literal["text", "file", "json"]
MODE_LABELS: dict[InputMode, str] = {"text": "Text", "file": "File", "json": "JSON"}
HISTORY_LIMIT = 20

_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


class InputError(ValueError):
    """The input cannot be sent as it is; the message says what to fix."""


def mode_for_kind(kind: str | None) -> InputMode:
    """Unknown kinds get the text box: most models without a sample are demos typed by hand."""
    if kind in ("bytes", "image"):
        return "file"
    if kind == "json":
        return "json"
    return "text"


def image_format(data: bytes) -> str | None:
    for signature, fmt in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def format_size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


def format_latency(ms: float) -> str:
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


def shorten(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


@dataclass(frozen=True)
class Query:
    """One instance ready to send: text and files travel raw, JSON as ``{"instances": [...]}``."""

    mode: InputMode
    value: Any
    data: bytes | None = None
    content_type: str | None = None
    filename: str | None = None

    def summary(self) -> str:
        if self.mode == "text":
            return shorten(json.dumps(self.value, ensure_ascii=False))
        if self.mode == "file":
            name = self.filename or "sample input"
            return f"{name} ({format_size(len(self.data or b''))})"
        return shorten(json.dumps(encode_instance(self.value), ensure_ascii=False))

    def send(
        self,
        client: Client,
        model_id: str,
        *,
        token: str | None = None,
        version: int | None = None,
    ) -> Prediction:
        if self.mode == "json":
            return client.predict(model_id, [self.value], token=token, version=version)
        if self.mode == "text":
            return client.predict_raw(
                model_id, str(self.value), "text/plain", token=token, version=version
            )
        return client.predict_raw(
            model_id,
            self.data or b"",
            self.content_type or "application/octet-stream",
            token=token,
            version=version,
        )


def text_query(text: str) -> Query:
    if not text.strip():
        raise InputError("Type some text first.")
    return Query("text", text)


def describe_json_error(exc: json.JSONDecodeError) -> str:
    return f"Line {exc.lineno}, column {exc.colno}: {exc.msg}."


def parse_json(text: str) -> Any:
    """Parse one instance; ``{"b64": ...}`` objects become bytes, as on the server."""
    if not text.strip():
        raise InputError('Enter one JSON value, for example {"x": [1, 2, 3]}.')
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"Invalid JSON. {describe_json_error(exc)}") from exc
    try:
        return decode_instance(value, "input")
    except InstanceError as exc:
        raise InputError(str(exc)) from exc


def json_query(text: str) -> Query:
    return Query("json", parse_json(text))


def file_query(data: bytes | None, filename: str | None, declared_type: str | None = None) -> Query:
    """Images go as ``image/<format>`` (the server passes them as bytes), anything else as octets."""
    if data is None:
        raise InputError("Choose a file first.")
    fmt = image_format(data)
    if declared_type and declared_type.startswith("image/"):
        content_type = declared_type
    elif fmt is not None:
        content_type = f"image/{fmt}"
    else:
        content_type = "application/octet-stream"
    return Query("file", data, data=data, content_type=content_type, filename=filename)


def default_version(model: Mapping[str, Any]) -> int | None:
    value = model.get("default_version")
    return int(value) if isinstance(value, int) else None


def version_info(model: Mapping[str, Any], version: int | None) -> dict[str, Any] | None:
    wanted = default_version(model) if version is None else version
    for info in model.get("versions") or []:
        if info.get("version") == wanted:
            return dict(info)
    return None


def version_options(model: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Newest first, the default one marked, so the usual choice is at the top or labelled."""
    default = default_version(model)
    versions = sorted(
        (v for v in model.get("versions") or [] if isinstance(v.get("version"), int)),
        key=lambda v: int(v["version"]),
        reverse=True,
    )
    options = []
    for info in versions:
        number = int(info["version"])
        notes = ["default"] if number == default else []
        if info.get("status") == "failed":
            notes.append("failed")
        label = f"v{number} ({', '.join(notes)})" if notes else f"v{number}"
        options.append((label, number))
    return options


def sample_input(info: Mapping[str, Any] | None) -> Any:
    """The version's sample input decoded (bytes restored), or ``None`` when there is none."""
    sample = (info or {}).get("sample")
    if not isinstance(sample, Mapping) or "input" not in sample:
        return None
    try:
        return decode_instance(sample["input"], "sample")
    except InstanceError:
        return None


@dataclass(frozen=True)
class HistoryEntry:
    query: Query
    requested_version: int | None
    served_version: int | None
    answer: Any = None
    error: str | None = None
    latency_ms: float | None = None
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.error is None


class History:
    """The last ``limit`` queries, newest first."""

    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self._entries: deque[HistoryEntry] = deque(maxlen=limit)

    @property
    def limit(self) -> int:
        return self._entries.maxlen or HISTORY_LIMIT

    def add(self, entry: HistoryEntry) -> None:
        self._entries.appendleft(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(list(self._entries))

    def __getitem__(self, index: int) -> HistoryEntry:
        return self._entries[index]

    def clear(self) -> None:
        self._entries.clear()
