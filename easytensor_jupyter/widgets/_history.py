"""The list of past queries, newest first, each with a button that runs it again."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets

from easytensor_jupyter.widgets._render import history_html
from easytensor_jupyter.widgets._state import History, HistoryEntry

__all__ = ["HistoryView"]


class HistoryView:
    """Rebuilt from ``History`` after each query; twenty rows are cheap to redraw."""

    def __init__(self, on_rerun: Callable[[HistoryEntry], None]) -> None:
        self._on_rerun = on_rerun
        self.title = widgets.HTML()
        self.rows = widgets.VBox()
        self.buttons: list[widgets.Button] = []
        self.widget = widgets.VBox([self.title, self.rows])
        self.widget.add_class("easytensor-history")
        self.update(History())

    def update(self, history: History) -> None:
        count = len(history)
        note = (
            f"{count} {'query' if count == 1 else 'queries'}, the last {history.limit} are kept"
            if count
            else "queries you run show here"
        )
        self.title.value = f"<b>History</b> <span style='opacity:.65'>({note})</span>"
        old = self.rows.children
        rows = []
        self.buttons = []
        for entry in history:
            button = widgets.Button(
                description="Re-run",
                icon="redo",
                tooltip="Put this input back and run it again",
                layout=widgets.Layout(width="auto", min_width="84px"),
            )
            button.add_class("easytensor-rerun")
            button.on_click(self._handler(entry))
            self.buttons.append(button)
            rows.append(widgets.HBox([button, widgets.HTML(history_html(entry))]))
        self.rows.children = rows
        for row in old:
            for child in row.children:
                child.close()
            row.close()

    def set_enabled(self, enabled: bool) -> None:
        for button in self.buttons:
            button.disabled = not enabled

    def _handler(self, entry: HistoryEntry) -> Callable[[widgets.Button], None]:
        def run(_: widgets.Button) -> None:
            self._on_rerun(entry)

        return run
