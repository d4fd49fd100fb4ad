"""What a failed call to the inference server looks like on the client side.

Every server error arrives as ``EasyTensorError`` carrying the server's code and message, so the
magics, widgets and CLI can show the same plain text the server wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

__all__ = ["EasyTensorError", "error_from", "retry_after"]


class EasyTensorError(Exception):
    """A failed call: ``status`` is the HTTP status (0 when the server could not be reached)."""

    def __init__(
        self, message: str, *, status: int = 0, code: str = "error", detail: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (HTTP {self.status}, {self.code})" if self.status else base

    @property
    def traceback_tail(self) -> str | None:
        if isinstance(self.detail, Mapping):
            tail = self.detail.get("traceback")
            return str(tail) if tail else None
        return None


def retry_after(response: requests.Response, default: float) -> float:
    try:
        return min(float(response.headers.get("Retry-After", default)), 10.0)
    except ValueError:
        return default


def error_from(response: requests.Response) -> EasyTensorError:
    try:
        error = response.json()["error"]
        return EasyTensorError(
            str(error.get("message", response.reason)),
            status=response.status_code,
            code=str(error.get("code", "error")),
            detail=error.get("detail"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip()[:300] or response.reason
        return EasyTensorError(text, status=response.status_code, code="http_error")
