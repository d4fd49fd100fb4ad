"""A short way through the server for predictions, past FastAPI's router and middleware stack.

Profiling ``easytensor serve`` under load showed FastAPI's per-request machinery (middleware
chain, router, dependency solving, parameter validation) costing more server CPU than the
prediction itself for a small model. This outermost ASGI middleware answers
``POST /v1/models/{id}/predict`` and ``POST /query/`` directly, with the same pieces the routes
use: the size limit and its 413 answer from ``upload``, ``Authenticator`` for credentials, and
``api.predict.predict_answer`` for the work, the body's memory budget and every error shape.
It reads the body itself and writes the answer as two ASGI messages, skipping Starlette's Request/Response objects,
which showed up in the profile too. An ``Accept`` asking for a stream (SSE or NDJSON) is
answered here too, by ``api.streaming``, so each event skips the same machinery. Anything it is not sure
about (a query string other than ``version=N``, a browser ``Origin`` header, which CORS must see,
an over-long model id, ``?stream=true``) goes the ordinary way, so FastAPI keeps producing those answers.
"""

from __future__ import annotations

import logging

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from easytensor_jupyter.inference.api.bodies import BodyLease, PredictBodies
from easytensor_jupyter.inference.api.errors import APIError, error_response
from easytensor_jupyter.inference.api.predict import predict_answer
from easytensor_jupyter.inference.api.schemas import MAX_VERSION
from easytensor_jupyter.inference.api.streaming import StreamKind, open_answer
from easytensor_jupyter.inference.api.upload import _too_large
from easytensor_jupyter.inference.state import AppState
from easytensor_jupyter.inference.store import NotFoundError

__all__ = ["PredictFastPath"]

log = logging.getLogger("easytensor.server")

_PREFIX = "/v1/models/"
_SUFFIX = "/predict"
_PREDICT_ROUTE = "/v1/models/{model_id}/predict"
_QUERY_ROUTE = "/query/"
_MAX_ID = 200
_STATUS_LABELS = {code: str(code) for code in range(100, 600)}
_JSON = (b"content-type", b"application/json")
_VERSION = b"x-easytensor-version"


def _version(query: bytes) -> int | bool | None:
    """``None`` for no query string, the number for ``version=N``, False for anything else."""
    if not query:
        return None
    key, sep, value = query.partition(b"=")
    if key != b"version" or not sep or not value.isdigit() or len(value) > 10:
        return False
    number = int(value)
    return number if 1 <= number <= MAX_VERSION else False


class PredictFastPath:
    """Answer prediction requests without FastAPI; pass everything else on unchanged."""

    def __init__(self, app: ASGIApp, state: AppState, bodies: PredictBodies) -> None:
        self.app = app
        self.state = state
        self.bodies = bodies
        self.max_body_bytes = bodies.max_body_bytes

    def _route(
        self, scope: Scope
    ) -> tuple[str, int | None, bytes | None, str, StreamKind | None, str | None] | None:
        """(model id or "" for /query/, version, Content-Length, Content-Type, the stream the
        Accept header asks for, request key) when this request is ours to answer."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path: str = scope["path"]
        if path == _QUERY_ROUTE:
            model_id = ""
        elif path.startswith(_PREFIX) and path.endswith(_SUFFIX):
            model_id = path[len(_PREFIX) : -len(_SUFFIX)]
            if not model_id or "/" in model_id or len(model_id) > _MAX_ID:
                return None
        else:
            return None
        version = _version(scope.get("query_string", b""))
        if version is False or (model_id == "" and version is not None):
            return None
        length: bytes | None = None
        content_type: str | None = None
        stream: StreamKind | None = None
        key: str | None = None
        for name, value in scope["headers"]:
            if name == b"origin":
                return None
            if name == b"accept" and (b"event-stream" in value or b"ndjson" in value):
                stream = "ndjson" if b"ndjson" in value else "sse"
            if name == b"content-length" and length is None:
                length = value
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
            elif name == b"x-easytensor-key" and key is None:
                key = value.decode("latin-1")
        if stream is not None and model_id == "":
            return None
        return model_id, version, length, content_type or "application/json", stream, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        model_id, version, length, content_type, stream, key = route
        status = 500
        try:
            status, payload, headers = await self._answer(
                scope, receive, model_id, version, length, content_type, stream, send, key
            )
            if payload is not None:
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": payload})
        finally:
            label = _QUERY_ROUTE if route[0] == "" else _PREDICT_ROUTE
            self.state.metrics.requests.labels(
                label, "POST", _STATUS_LABELS.get(status, "500")
            ).inc()

    async def _read_body(self, receive: Receive, lease: BodyLease, declared: int | None) -> bytes:
        """The whole body, refused with 413 as soon as it passes the limit.

        A declared length is taken from the budget at once; a chunked body chunk by chunk.
        """
        if declared:
            await lease.take_raw(declared)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise _too_large(self.max_body_bytes)
                if declared is None or size > declared:
                    await lease.take_raw(len(chunk))
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        model_id: str,
        version: int | None,
        length: bytes | None,
        content_type: str,
        stream: StreamKind | None = None,
        send: Send | None = None,
        key: str | None = None,
    ) -> tuple[int, bytes | None, list[tuple[bytes, bytes]]]:
        state = self.state
        declared: int | None = None
        try:
            if length is not None:
                try:
                    declared = int(length)
                except ValueError:
                    raise APIError(400, "bad_request", "Content-Length is not a number") from None
                if declared > self.max_body_bytes:
                    raise _too_large(self.max_body_bytes)
                declared = max(declared, 0)
            principal = state.auth.authenticate(Request(scope))
            if model_id == "":
                if principal.model_id is None:
                    raise APIError(
                        403,
                        "query_token_required",
                        "/query/ needs a model's query token; "
                        "with the admin key use /v1/models/{id}/predict",
                    )
                model_id = principal.model_id
            elif not principal.may_query(model_id):
                raise APIError(403, "wrong_model", "this query token belongs to another model")
            if stream is not None and send is not None:
                streamed = await open_answer(
                    state,
                    self.bodies,
                    model_id,
                    version,
                    stream,
                    content_type,
                    lambda lease: self._read_body(receive, lease, declared),
                )
                try:
                    await streamed(scope, receive, send)
                except Exception:
                    log.exception("a stream failed after it started on POST %s", scope["path"])
                return 200, None, []
            answer = await predict_answer(
                state,
                self.bodies,
                model_id,
                version,
                content_type,
                lambda lease: self._read_body(receive, lease, declared),
                principal,
                key,
            )
            payload = orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS)
            served = (_VERSION, str(answer["version"]).encode())
            return 200, payload, [(b"content-length", str(len(payload)).encode()), _JSON, served]
        except ClientDisconnect:
            return 499, None, []
        except APIError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.detail, exc.headers)
        except NotFoundError as exc:
            response = error_response(404, "not_found", str(exc))
        except Exception as exc:
            log.exception("internal error on POST %s", scope["path"])
            response = error_response(
                500, "internal_error", f"internal server error: {type(exc).__name__}", None
            )
        return response.status_code, bytes(response.body), response.raw_headers
