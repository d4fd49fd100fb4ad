"""The list of past queries, newest first, each with a button that runs it again."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets

from easytensor_jupyter.widgets._render import history_html
from easytensor_jupyter.widgets._state import History, HistoryEntry

__all__ = ["HistoryView"]


class HistoryView:
    """Follows ``History`` after each query: a row for each new entry, the others kept.

    Rebuilding every row made each query cost tens of milliseconds of widget creation (and
    as many comm messages) in the kernel, more than a small model's own time.
    """

    def __init__(self, on_rerun: Callable[[HistoryEntry], None]) -> None:
        self._on_rerun = on_rerun
        self.title = widgets.HTML()
        self.rows = widgets.VBox()
        self.buttons: list[widgets.Button] = []
        self._shown: dict[int, tuple[HistoryEntry, widgets.HBox, widgets.Button]] = {}
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
        title = f"<b>History</b> <span style='opacity:.65'>({note})</span>"
        if self.title.value != title:
            self.title.value = title
        shown: dict[int, tuple[HistoryEntry, widgets.HBox, widgets.Button]] = {}
        for entry in history:
            # The stored entry keeps its id from being reused while it is in the dict.
            found = self._shown.pop(id(entry), None)
            shown[id(entry)] = found if found is not None else self._row(entry)
        stale = self._shown.values()
        rows = tuple(row for _, row, _ in shown.values())
        if rows != self.rows.children:
            self.rows.children = rows
        for _, row, _ in stale:
            for child in row.children:
                child.close()
            row.close()
        self._shown = shown
        self.buttons = [button for _, _, button in shown.values()]

    def _row(self, entry: HistoryEntry) -> tuple[HistoryEntry, widgets.HBox, widgets.Button]:
        button = widgets.Button(
            description="Re-run",
            icon="redo",
            tooltip="Put this input back and run it again",
            layout=widgets.Layout(width="auto", min_width="84px"),
        )
        button.add_class("easytensor-rerun")
        button.on_click(self._handler(entry))
        return entry, widgets.HBox([button, widgets.HTML(history_html(entry))]), button

    def _handler(self, entry: HistoryEntry) -> Callable[[widgets.Button], None]:
        def run(_: widgets.Button) -> None:
            self._on_rerun(entry)

        return run
