"""The query panel: input, Predict, answer, errors, versions, history and curl in one widget.

Requests run in a background thread so a slow model never blocks the kernel: the user can keep
running cells while the panel shows that it is busy. Widget updates from that thread are sent by
ipykernel's IOPub thread, which is safe.
"""

from __future__ import annotations

import threading
from html import escape
from typing import Any

import ipywidgets as widgets

from easytensor_jupyter.client import Client, EasyTensorError
from easytensor_jupyter.widgets._curl import TOKEN_VARIABLE, curl_command
from easytensor_jupyter.widgets._drift import drift_html
from easytensor_jupyter.widgets._history import HistoryView
from easytensor_jupyter.widgets._inputs import InputEditor, close_tree
from easytensor_jupyter.widgets._render import (
    answer_html,
    error_html,
    error_summary,
    latency_html,
    running_html,
)
from easytensor_jupyter.widgets._state import (
    History,
    HistoryEntry,
    InputError,
    Query,
    default_version,
    mode_for_kind,
    sample_input,
    version_info,
    version_options,
)
from easytensor_jupyter.widgets._stream import stream_query
from easytensor_jupyter.widgets._token import TokenRow

__all__ = ["QueryPanel", "show_panel"]

_SERVER_DEFAULT = 0


class QueryPanel:
    """Query one deployed model from the notebook; displays itself as an ipywidgets box.

    Without ``token`` the client's admin key is sent, so the panel works right after a deploy;
    with a query ``token`` it is used for predictions, and shown masked unless Show is pressed:
    the widgets are saved with the notebook, the token must not be.
    """

    def __init__(
        self, model_id: str, *, client: Client | None = None, token: str | None = None
    ) -> None:
        self.model_id = model_id
        self.client = client if client is not None else Client.connect()
        self.token = token
        self.history = History()
        self.model: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self._running_shown = threading.Event()
        self._busy = False
        self._built = False
        notice = self._load_model()

        info = version_info(self.model, None) or {}
        self.inputs = InputEditor(
            mode_for_kind(info.get("input_kind")), on_change=self._refresh_curl
        )
        if info.get("input_kind") == "image":
            self.inputs.upload.accept = "image/*"
        sample = sample_input(info)
        if sample is not None:
            self.inputs.load_value(sample)

        self.title = widgets.HTML()
        self.drift_notice = widgets.HTML(layout=widgets.Layout(display="none"))
        self.drift_notice.add_class("easytensor-drift")
        self.version_picker = widgets.Dropdown(
            description="Version", layout=widgets.Layout(width="220px")
        )
        self.version_picker.add_class("easytensor-version")
        self.reload_button = widgets.Button(
            icon="refresh", tooltip="Reload the model's versions", layout={"width": "36px"}
        )
        self.predict_button = widgets.Button(
            description="Predict", button_style="primary", icon="play"
        )
        self.predict_button.add_class("easytensor-predict")
        self.latency = widgets.HTML()
        self.latency.add_class("easytensor-latency")
        self.answer = widgets.HTML()
        self.answer.add_class("easytensor-answer")
        self.error = widgets.HTML(layout=widgets.Layout(display="none"))
        self.error.add_class("easytensor-error")
        self.endpoint = widgets.HTML()
        self.token_row = TokenRow(model_id, token)
        self.curl = widgets.HTML()
        self.curl.add_class("easytensor-curl")
        self.history_view = HistoryView(self._rerun)

        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [self.title, widgets.HBox([self.version_picker, self.reload_button])],
                    layout=widgets.Layout(justify_content="space-between", align_items="center"),
                ),
                self.drift_notice,
                self.inputs.widget,
                widgets.HBox(
                    [self.predict_button, self.latency],
                    layout=widgets.Layout(align_items="center", grid_gap="12px"),
                ),
                self.answer,
                self.error,
                self.endpoint,
                self.token_row.widget,
                self.curl,
                self.history_view.widget,
            ],
            layout=widgets.Layout(
                border="1px solid var(--jp-border-color2, #ddd)",
                padding="8px 12px",
                max_width="900px",
                grid_gap="6px",
            ),
        )
        self.widget.add_class("easytensor-panel")

        self._fill_versions()
        self.version_picker.observe(self._refresh_curl, names="value")
        self.reload_button.on_click(lambda _: self.reload())
        self.predict_button.on_click(lambda _: self.predict())
        self._refresh_title()
        self._built = True
        self._refresh_curl()
        if notice is not None:
            self._show_error(notice)

    # -- display ------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"QueryPanel(model_id={self.model_id!r}, url={self.client.url!r})"

    def close(self) -> None:
        """Close every widget (the comms) and stop showing the panel."""
        self.inputs.close()
        close_tree(self.widget)

    # -- public actions -----------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._busy

    def predict(self) -> None:
        """Send the current input in the background; does nothing while a request is running."""
        if self._busy:
            return
        try:
            query = self.inputs.query()
        except InputError as exc:
            self._show_error(exc)
            return
        self._start(query, self.selected_version)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running request is done; True when nothing is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self._busy

    def reload(self) -> None:
        """Fetch the model again, e.g. after a new version was uploaded."""
        following_default = self.selected_version is None
        problem = self._load_model()
        self._fill_versions(following_default)
        self._refresh_title()
        if problem is not None:
            self._show_error(problem)

    def show_drift(self, drift: Any) -> None:
        """Show how the kernel's model differs from the deployed default; hide when it matches."""
        html = drift_html(drift)
        self.drift_notice.value = html
        self.drift_notice.layout.display = "block" if html else "none"

    @property
    def selected_version(self) -> int | None:
        """The version to ask for; ``None`` means the server's default, kept out of the URL."""
        value = self.version_picker.value
        if value in (None, _SERVER_DEFAULT) or value == default_version(self.model):
            return None
        return int(value)

    # -- internals ----------------------------------------------------------------------------
    def _load_model(self) -> EasyTensorError | None:
        """Only the admin key may read model details; with just a query token the panel still works."""
        try:
            self.model = self.client.get_model(self.model_id)
        except EasyTensorError as exc:
            if self.token is None or exc.status not in (401, 403):
                raise
            self.model = {}
            return EasyTensorError(
                "This key cannot read the model's details, so only its default version is "
                f"offered. ({exc.args[0] if exc.args else exc})",
                status=exc.status,
                code=exc.code,
            )
        return None

    def _fill_versions(self, following_default: bool = True) -> None:
        """Keep an explicitly picked version; otherwise follow the (possibly new) default."""
        options: list[tuple[str, int]] = version_options(self.model)
        current = self.version_picker.value
        if not options:
            self.version_picker.options = [("default", _SERVER_DEFAULT)]
            self.version_picker.disabled = True
            return
        self.version_picker.disabled = False
        self.version_picker.options = options
        numbers = [n for _, n in options]
        default = default_version(self.model)
        if default in numbers and (following_default or current not in numbers):
            self.version_picker.value = default
        elif current in numbers:
            self.version_picker.value = current

    def _refresh_title(self) -> None:
        name = self.model.get("name") or self.model_id
        self.title.value = (
            f"<b>{escape(str(name))}</b> "
            f"<span style='opacity:.65'>\u00b7 {escape(self.model_id)}</span>"
        )

    def _refresh_curl(self, change: dict[str, Any] | None = None) -> None:
        if not self._built:
            return
        endpoint = self.client.endpoint(self.model_id)
        try:
            query: Query | None = self.inputs.query()
        except InputError:
            query = None
        command = curl_command(endpoint, query, version=self.selected_version)
        hint = (
            ""
            if self.token
            else f"<div style='opacity:.7;font-size:90%'>Set <code>{TOKEN_VARIABLE}</code> "
            f"to a query token first: <code>easytensor tokens create "
            f"{escape(self.model_id)}</code></div>"
        )
        self.endpoint.value = f"<b>Endpoint</b> <code>{escape(endpoint)}</code>{hint}"
        self.curl.value = (
            '<pre style="margin:0;padding:6px 8px;white-space:pre-wrap;word-break:break-all;'
            "user-select:all;background:var(--jp-layout-color2,#f5f5f5);border-radius:3px;"
            'font-family:var(--jp-code-font-family,monospace);font-size:12px" '
            f'title="Click to select the whole command">{escape(command)}</pre>'
        )

    def _start(self, query: Query, version: int | None) -> None:
        """The request goes out first; the running state is drawn while it is under way."""
        self._busy = True
        self._running_shown.clear()
        self._thread = threading.Thread(
            target=self._run, args=(query, version), name="easytensor-predict", daemon=True
        )
        self._thread.start()
        try:
            self._set_running(True)
        finally:
            self._running_shown.set()

    def _streams(self, version: int | None) -> bool:
        info = version_info(self.model, version) or {}
        return bool(info.get("streaming"))

    def _run(self, query: Query, version: int | None) -> None:
        try:
            if self._streams(version):
                streamed = stream_query(
                    self.client,
                    self.model_id,
                    query,
                    self.answer,
                    self.latency,
                    token=self.token,
                    version=version,
                )
                self._hide_error()
                self.history.add(
                    HistoryEntry(
                        query,
                        version,
                        streamed.version,
                        answer=streamed.answer,
                        latency_ms=streamed.latency_ms,
                    )
                )
                return
            result = query.send(self.client, self.model_id, token=self.token, version=version)
        except Exception as exc:
            self.answer.value = ""
            self.latency.value = ""
            self._show_error(exc)
            self.history.add(HistoryEntry(query, version, version, error=error_summary(exc)))
        else:
            answer = result.predictions[0] if result.predictions else None
            self.answer.value = answer_html(answer)
            self.latency.value = latency_html(result.latency_ms, result.version)
            self._hide_error()
            self.history.add(
                HistoryEntry(
                    query,
                    version,
                    result.version,
                    answer=answer,
                    latency_ms=result.latency_ms,
                )
            )
        finally:
            self._running_shown.wait()
            self.history_view.update(self.history)
            self._set_running(False)

    def _rerun(self, entry: HistoryEntry) -> None:
        if self._busy:
            return
        self.inputs.load(entry.query)
        numbers = [value for _, value in self.version_picker.options]
        if entry.requested_version in numbers:
            self.version_picker.value = entry.requested_version
        elif default_version(self.model) in numbers:
            self.version_picker.value = default_version(self.model)
        self._start(entry.query, entry.requested_version)

    def _set_running(self, running: bool) -> None:
        self._busy = running
        self.predict_button.disabled = running
        self.predict_button.description = "Running\u2026" if running else "Predict"
        self.predict_button.icon = "hourglass-half" if running else "play"
        if running:
            self.latency.value = running_html()

    def _show_error(self, exc: BaseException) -> None:
        self.error.value = error_html(exc)
        self.error.layout.display = None

    def _hide_error(self) -> None:
        self.error.value = ""
        self.error.layout.display = "none"


def show_panel(
    model_id: str, *, client: Client | None = None, token: str | None = None
) -> QueryPanel:
    """Build a panel and display it in the current cell's output; returns it for later use."""
    from IPython.display import display

    panel = QueryPanel(model_id, client=client, token=token)
    display(panel)  # type: ignore[no-untyped-call]
    return panel
