"""The query panel's notice that the kernel's model differs from the deployed default."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["drift_html"]

_COLOURS = {"drifted": "#b45309", "unknown": "#6b7280"}


def drift_html(drift: Any) -> str:
    """Empty when the kernel matches the deployed default (the notice hides)."""
    if drift is None or drift.state == "same":
        return ""
    colour = _COLOURS.get(drift.state, "#6b7280")
    where = f"v{drift.version}" if drift.version is not None else "the deployed default"
    if drift.state == "unknown":
        head = f"Drift from {where} unknown"
        items = [drift.reason or ""]
    else:
        head = f"The kernel's model differs from the deployed {where}"
        items = [*drift.lines(), "Re-run the %%easytensor_model cell to deploy it."]
    rows = "".join(f"<li>{escape(item)}</li>" for item in items if item)
    return (
        f'<div class="easytensor-drift-notice" data-state="{drift.state}" '
        f'style="border-left:3px solid {colour};padding:2px 8px;color:{colour}">'
        f"<b>{escape(head)}</b><ul style='margin:2px 0'>{rows}</ul></div>"
    )
