"""One JSON shape for every error, whoever raises it: our routes, FastAPI or Starlette.

Clients (the notebook client, the lab panel, curl users) read ``error.code`` to decide what to
do and show ``error.message`` as is, so FastAPI's default ``{"detail": ...}`` bodies for
validation, 404 and 405 are rewritten here too.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

__all__ = [
    "APIError",
    "ErrorBody",
    "ErrorResponse",
    "OrjsonResponse",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "json_response",
]

log = logging.getLogger("easytensor.server")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}


class OrjsonResponse(JSONResponse):
    """JSONResponse rendered by orjson; a JSONResponse subclass so that FastAPI documents the
    routes' response models (for any other class it writes ``{"type": "string"}``)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    if isinstance(content, BaseModel):
        content = content.model_dump(mode="json")
    return OrjsonResponse(content, status_code=status, headers=headers)


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class APIError(Exception):
    """An error meant for the client; ``code`` is stable, ``message`` is for people."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> OrjsonResponse:
    body = {"error": {"code": code, "message": message, "detail": detail}}
    return OrjsonResponse(body, status_code=status, headers=headers)


_DESCRIPTIONS = {
    400: "Malformed request, or a Host that is not this server's (host_not_allowed)",
    401: "Missing or invalid credentials",
    403: "Credentials of the wrong kind or for another model",
    404: "No such model, version or token",
    409: "Conflicts with the current state",
    413: "Body over a limit: its size, decoded size, values, instances or the in-flight budget",
    415: "Unsupported content type",
    422: "Invalid input, model error or load error",
    502: "The model's worker crashed",
    503: "Overloaded or restarting; retry after the Retry-After seconds",
    504: "The prediction timed out",
    507: "The server's store is out of space; nothing was saved",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry for route decorators, so the OpenAPI lists each error.

    422 is always listed, in our shape: otherwise FastAPI documents its own validation body,
    which this server never sends.
    """
    wanted = sorted({*statuses, 422})
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in wanted}


def _location(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)] if isinstance(loc, list | tuple) else []
    return ".".join(parts) or "body"


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc.status, exc.code, exc.message, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
        for e in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(400, "bad_json", "the request body is not valid JSON", errors)
    message = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors)
    return error_response(422, "invalid_request", message or "invalid request", errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, None, dict(exc.headers or {}))


async def _server_bug(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response(
        500, "internal_error", f"internal server error: {type(exc).__name__}", None
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _server_bug)
