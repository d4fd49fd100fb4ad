"""The seed API's one shared connection, made on first use."""

from __future__ import annotations

from easytensor_jupyter.client import Client

__all__ = ["client", "set_api_key", "set_base_url"]

_state: dict[str, str | None] = {"url": None, "api_key": None}
_client: list[Client] = []


def set_base_url(url: str | None) -> None:
    """Send everything to the server at ``url`` (None: back to the environment / embedded server)."""
    _state["url"] = url.rstrip("/") if url else None
    _client.clear()


def set_api_key(key: str | None) -> None:
    _state["api_key"] = key
    _client.clear()


def client() -> Client:
    if not _client:
        _client.append(Client.connect(_state["url"], _state["api_key"]))
    return _client[0]
