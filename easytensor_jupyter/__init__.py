"""EasyTensor for Jupyter: publish a PyTorch model from a notebook as an HTTP endpoint.

Heavy parts (torch, IPython, widgets) load on first use, so the server extension and the CLI
start fast and the server process never imports model-facing code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from easytensor_jupyter._version import __version__

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = [
    "QueryPanel",
    "__version__",
    "compare",
    "last_deployment",
    "load_ipython_extension",
    "request_log",
    "set_request_log",
    "unload_ipython_extension",
]


def load_ipython_extension(shell: InteractiveShell) -> None:
    import os

    from easytensor_jupyter.magics import load_magics

    load_magics(shell)
    if os.environ.get("EASYTENSOR_WARM_CHECK", "1") != "0":
        from easytensor_jupyter.warm_check import shared_checker

        # Import torch in the warm parent now, while the user writes the model.
        shared_checker().start_in_background()
    from easytensor_jupyter.embedded import start_early

    start_early()


def unload_ipython_extension(shell: InteractiveShell) -> None:
    from easytensor_jupyter.magics import unload_magics

    unload_magics(shell)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "easytensor_jupyter.serverext"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "easytensor-jupyter"}]


def last_deployment() -> Any:
    """The most recent deploy made by the magics in this kernel (None before the first)."""
    from easytensor_jupyter.magics import last_deployment as last

    return last()


def request_log(model: str, **options: Any) -> Any:
    """A model's logged requests: a pandas DataFrame with pandas installed, else a list of
    dicts (see ``easytensor_jupyter.traffic.request_log`` for the filters)."""
    from easytensor_jupyter.traffic import request_log as fetch

    return fetch(model, **options)


def set_request_log(model: str, mode: str, **options: Any) -> Any:
    """Set what a model's request log keeps: off, errors, sample:P or all."""
    from easytensor_jupyter.traffic import set_request_log as apply

    return apply(model, mode, **options)


def compare(model: str, a: int, b: int, inputs: list[Any] | None = None, **options: Any) -> Any:
    """Replay inputs (default: the logged ones) on versions ``a`` and ``b`` on the server."""
    from easytensor_jupyter.traffic import compare as run

    return run(model, a, b, inputs, **options)


def __getattr__(name: str) -> Any:
    if name == "QueryPanel":
        from easytensor_jupyter.widgets import QueryPanel

        return QueryPanel
    raise AttributeError(name)
