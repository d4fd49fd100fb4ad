"""Answers, errors and status lines as HTML strings for ``ipywidgets.HTML``.

Everything that came from a model, a server or a user is escaped here: the HTML widget puts
its value into the page as markup, so a model answering ``"<img onerror=...>"`` must show as text.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from easytensor_jupyter.client import EasyTensorError
from easytensor_jupyter.widgets._state import HistoryEntry, InputError, format_latency, shorten

__all__ = [
    "MAX_ANSWER_CHARS",
    "answer_html",
    "error_html",
    "error_summary",
    "history_html",
    "json_status_html",
    "latency_html",
    "running_html",
]

MAX_ANSWER_CHARS = 20_000
SHORT_LABEL_CHARS = 60

_PRE = (
    'style="margin:0;padding:6px 8px;white-space:pre-wrap;word-break:break-word;'
    "max-height:24em;overflow:auto;background:var(--jp-layout-color2,#f5f5f5);"
    'border-radius:3px;font-family:var(--jp-code-font-family,monospace);font-size:12px"'
)
_HINTS = {
    502: "The model's worker process crashed. The next query starts a fresh one.",
    504: "The model took too long, so the server stopped it. Try a smaller input.",
}


def _pretty(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


def _is_short_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return 0 < len(value) <= SHORT_LABEL_CHARS and "\n" not in value
    return isinstance(value, int | float) and not isinstance(value, bool)


def answer_html(value: Any) -> str:
    """A short label or number is shown large; anything else as pretty JSON."""
    if _is_short_scalar(value):
        return (
            '<div class="easytensor-label" style="font-size:1.8em;font-weight:600;'
            f'line-height:1.3;padding:2px 0">{escape(str(value))}</div>'
        )
    text = _pretty(value)
    note = ""
    if len(text) > MAX_ANSWER_CHARS:
        note = (
            f'<div style="opacity:.7">Showing the first {MAX_ANSWER_CHARS:,} of '
            f"{len(text):,} characters.</div>"
        )
        text = text[:MAX_ANSWER_CHARS]
    return f"<pre {_PRE}>{escape(text)}</pre>{note}"


def error_summary(exc: BaseException) -> str:
    """One line for the history list."""
    if isinstance(exc, EasyTensorError) and exc.status:
        return f"HTTP {exc.status} {exc.code}: {shorten(str(exc.args[0]), 60)}"
    return shorten(str(exc) or type(exc).__name__, 70)


def _error_parts(exc: BaseException) -> tuple[str, str, str | None]:
    if isinstance(exc, InputError):
        return "Check the input", str(exc), None
    if isinstance(exc, EasyTensorError):
        message = str(exc.args[0]) if exc.args else ""
        if not exc.status:
            title = "Request timed out" if exc.code == "client_timeout" else "No answer"
            return title, message, None
        hint = _HINTS.get(exc.status)
        if hint and hint not in message:
            message = f"{message}\n{hint}" if message else hint
        return f"HTTP {exc.status} \u00b7 {exc.code}", message, exc.traceback_tail
    return f"Unexpected error: {type(exc).__name__}", str(exc), None


def error_html(exc: BaseException) -> str:
    title, message, tail = _error_parts(exc)
    lines = "<br>".join(escape(line) for line in message.splitlines())
    parts = [
        '<div style="border-left:4px solid var(--jp-error-color1,#d32f2f);'
        "background:var(--jp-error-color3,#fdecea);color:var(--jp-ui-font-color1,#000);"
        'padding:6px 10px;border-radius:3px">',
        f'<div class="easytensor-error-title" style="font-weight:600">{escape(title)}</div>',
        f'<div class="easytensor-error-message">{lines}</div>',
    ]
    if tail:
        parts.append(
            '<div style="margin-top:6px;font-size:90%">Model traceback (last lines):</div>'
            f'<pre class="easytensor-traceback" {_PRE}>{escape(tail.rstrip())}</pre>'
        )
    parts.append("</div>")
    return "".join(parts)


def json_status_html(text: str, error: InputError | None) -> str:
    """Under the JSON box: where the JSON breaks, with the line and a caret under the column."""
    if error is None:
        return '<span style="color:var(--jp-success-color1,#388e3c)">Valid JSON</span>'
    cause = error.__cause__
    out = f'<span style="color:var(--jp-error-color1,#d32f2f)">{escape(str(error))}</span>'
    if isinstance(cause, json.JSONDecodeError):
        lines = text.splitlines() or [""]
        line = lines[min(cause.lineno, len(lines)) - 1]
        caret = " " * (cause.colno - 1) + "^"
        out += f"<pre {_PRE}>{escape(line)}\n{escape(caret)}</pre>"
    return out


def running_html() -> str:
    return '<i class="fa fa-spinner fa-spin"></i> Running\u2026'


def latency_html(ms: float, version: int | None) -> str:
    served = f" \u00b7 v{version}" if version is not None else ""
    return f"{escape(format_latency(ms))}{served}"


def history_html(entry: HistoryEntry) -> str:
    if entry.error is None:
        outcome = escape(shorten(_compact(entry.answer), 60))
    else:
        outcome = f'<span style="color:var(--jp-error-color1,#d32f2f)">{escape(entry.error)}</span>'
    meta = []
    if entry.latency_ms is not None:
        meta.append(format_latency(entry.latency_ms))
    version = entry.served_version or entry.requested_version
    meta.append(f"v{version}" if version is not None else "default")
    return (
        f"<code>{escape(entry.query.summary())}</code> \u2192 {outcome} "
        f'<span style="opacity:.65">({escape(" · ".join(meta))})</span>'
    )


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
