"""The panel's query-token row: masked, with Show and Copy on demand.

Widget state is saved with the notebook (nbclient does it, JupyterLab can), so the whole token
is in a widget only while shown: Show puts it in a text field, Hide empties the field again.
Copy reveals it for the moment it takes to copy, from the browser: a small inline handler, the
only script in the panel. Where scripts do not run, Show still lets the token be selected.
"""

from __future__ import annotations

from html import escape
from typing import Any

import ipywidgets as widgets

from easytensor_jupyter.token_keeper import TokenKeeper, mask

__all__ = ["TokenRow"]

# Reveal if hidden, wait for the field to fill, copy, hide again. Single quotes only: it lives
# in a double-quoted attribute.
_COPY_JS = (
    "(async b => {"
    "const row = b.closest('.easytensor-token');"
    "const field = () => row.querySelector('.easytensor-token-value input');"
    "const toggle = row.querySelector('.easytensor-token-show');"
    "const shown = !!(field() && field().value);"
    "if (!shown) toggle.click();"
    "for (let i = 0; i < 100 && !(field() && field().value); i++) "
    "await new Promise(r => setTimeout(r, 30));"
    "const value = field() ? field().value : '';"
    "try { if (!value) throw new Error('no token'); await navigator.clipboard.writeText(value);"
    " b.textContent = 'Copied'; } catch (e) { b.textContent = 'Copy failed: use Show'; }"
    "if (!shown) toggle.click();"
    "setTimeout(() => { b.textContent = 'Copy'; }, 1500);"
    "})(this)"
)
COPY_BUTTON = (
    '<button type="button" class="jupyter-button easytensor-token-copy" '
    f'title="Copy the whole token" onclick="{_COPY_JS}">Copy</button>'
)


class TokenRow:
    """Shows ``mask(token)``; the whole token only while Show is pressed."""

    def __init__(self, model_id: str, token: str | None) -> None:
        self._token = token
        self.label = widgets.HTML("<b>Query token</b>")
        self.masked = widgets.HTML()
        self.show = widgets.ToggleButton(
            description="Show",
            icon="eye",
            tooltip="Show the whole token (it is not kept in the saved notebook)",
            layout=widgets.Layout(width="auto"),
        )
        self.show.add_class("easytensor-token-show")
        self.value = widgets.Text(
            layout=widgets.Layout(width="auto", flex="1 1 auto", display="none")
        )
        self.value.add_class("easytensor-token-value")
        self.copy = widgets.HTML(COPY_BUTTON)
        self.hint = widgets.HTML()
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [self.label, self.masked, self.value, self.show, self.copy],
                    layout=widgets.Layout(align_items="center", grid_gap="6px"),
                ),
                self.hint,
            ],
            layout=widgets.Layout(display=None if token else "none"),
        )
        self.widget.add_class("easytensor-token")
        self.show.observe(self._toggled, names="value")
        if token:
            self.masked.value = f"<code>{escape(mask(token))}</code>"
            self.hint.value = _shell_hint(model_id, token)

    @property
    def shown(self) -> bool:
        return bool(self.show.value)

    def hide(self) -> None:
        self.show.value = False

    def _toggled(self, change: dict[str, Any]) -> None:
        visible = bool(change["new"]) and self._token is not None
        self.value.value = self._token if visible and self._token else ""
        self.value.layout.display = None if visible else "none"
        self.masked.layout.display = "none" if visible else None
        self.show.description = "Hide" if visible else "Show"
        self.show.icon = "eye-slash" if visible else "eye"


def _shell_hint(model_id: str, token: str) -> str:
    """How to get the token in a shell, when this machine keeps it (a notebook's own token)."""
    kept = any(k.token == token for k in TokenKeeper().for_model(model_id))
    if not kept:
        return ""
    command = f"export EASYTENSOR_TOKEN=$(easytensor tokens show {model_id})"
    return (
        "<div style='opacity:.7;font-size:90%'>In a shell on this machine: "
        f"<code>{escape(command)}</code></div>"
    )
