"""The line magics about the server in use: ``%easytensor_models``, ``%easytensor_server`` and
``%easytensor_query``; they share the connection of the deploying magics."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from easytensor_jupyter.magics import EasyTensorMagics, parse_line

__all__ = ["ServerMagics"]


def _versions(model: dict[str, Any]) -> str:
    count = len(model["versions"])
    return f"{count} version{'' if count == 1 else 's'}"


@magics_class
class ServerMagics(Magics):
    def __init__(self, shell: InteractiveShell, main: EasyTensorMagics) -> None:
        super().__init__(shell)
        self.main = main

    @line_magic
    def easytensor_models(self, line: str) -> None:
        """List the models on the server in use."""
        from easytensor_jupyter.client import EasyTensorError

        try:
            models = self.main.client().list_models()
        except EasyTensorError as exc:
            raise UsageError(str(exc)) from None
        if not models:
            print(f"No models on {self.main.client().url} yet.")
            return
        for m in models:
            print(
                f"{m['id']:34} {m['name'][:30]:30} v{m['default_version']} ({_versions(m)}) {m.get('status', '')}"
            )
            drift = self.main.watch.check(m["id"])
            if drift is not None:
                print(f"    {drift.message()}")

    @magic_arguments()
    @argument("action", nargs="?", default="status", help="status | start | stop | URL")
    @line_magic
    def easytensor_server(self, line: str) -> None:
        """Show or change the server this notebook uses."""
        from easytensor_jupyter import embedded
        from easytensor_jupyter.client import Client, EasyTensorError

        action = parse_line(self.easytensor_server, line).action
        if action == "start":
            info = embedded.ensure_server()
            self.main.url, self.main._client = info.url, None
            print(f"Embedded server running at {info.url}")
        elif action == "stop":
            stopped = embedded.stop_server()
            self.main._client = None
            print("Embedded server stopped." if stopped else "No embedded server is running.")
        elif action == "status":
            try:
                client = self.main.client()
                health = client.health()
            except EasyTensorError as exc:
                print(f"Not connected: {exc}")
                return
            print(
                f"Server {client.url}: {health.get('status')}, {health.get('models', 0)} models, {health.get('workers', 0)} workers"
            )
        elif action.startswith(("http://", "https://")):
            try:
                Client(action).health()
            except EasyTensorError as exc:
                raise UsageError(
                    f"{action} does not answer as an EasyTensor server: {exc}"
                ) from None
            self.main.url, self.main._client = action.rstrip("/"), None
            print(f"Using {self.main.url}")
        else:
            raise UsageError(f"Unknown action {action!r}: use status, start, stop or a URL")

    @magic_arguments()
    @argument("model", help="model id or name")
    @argument("--token", help="a query token to use instead of the admin key")
    @line_magic
    def easytensor_query(self, line: str) -> None:
        """Show the query panel for a deployed model."""
        from easytensor_jupyter.client import EasyTensorError

        args = parse_line(self.easytensor_query, line)
        try:
            model = self.main.client().find_model(args.model)
        except EasyTensorError as exc:
            raise UsageError(str(exc)) from None
        self.main._show_panel(model["id"], args.token)
