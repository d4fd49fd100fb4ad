"""Predictions: ``/v1/models/{id}/predict`` and the original EasyTensor ``/query/`` route.

The body is read and answered by hand (no pydantic round trip) because this is the hot path;
the declared request and response models are there for the OpenAPI description.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from easytensor_jupyter.inference.api.auth import Principal
from easytensor_jupyter.inference.api.bodies import (
    BodyLease,
    DecodeLimits,
    PredictBodies,
    Scan,
    scan_json,
)
from easytensor_jupyter.inference.api.errors import APIError, OrjsonResponse, error_responses
from easytensor_jupyter.inference.api.schemas import MAX_VERSION, PredictIn, PredictOut
from easytensor_jupyter.inference.backends.errors import (
    WorkerBusy,
    WorkerCrashed,
    WorkerError,
    WorkerInputError,
    WorkerLoadError,
    WorkerMemoryLimit,
    WorkerOutputTooLarge,
    WorkerRestarted,
    WorkerTimeout,
)
from easytensor_jupyter.inference.state import AppState, ModelStats, get_state, require_caller
from easytensor_jupyter.inference.store import NotFoundError, VersionRecord
from easytensor_jupyter.inference.traffic import KEY_HEADER, VERSION_HEADER
from easytensor_jupyter.instances import InstanceError, NestingError, decode_instances

__all__ = ["decode_body", "predict_answer", "predict_response", "read_request", "router"]

router = APIRouter(tags=["predict"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictIn.model_json_schema()},
            "text/plain": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_ERRORS = error_responses(400, 401, 403, 404, 413, 415, 422, 502, 503, 504)
_RETRY = {"Retry-After": "1"}


def _invalid(message: str) -> APIError:
    return APIError(422, "invalid_instances", message)


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(mime: str) -> bool:
    return mime in ("application/json", "") or mime.endswith("+json")


async def read_request(request: Request, lease: BodyLease) -> bytes:
    """The body of a request that came the FastAPI way, counted against the budget."""
    chunks: list[bytes] = []
    async for chunk in request.stream():
        if chunk:
            await lease.take_raw(len(chunk))
            chunks.append(chunk)
    return b"".join(chunks)


async def decode_body(
    content_type: str, body: bytes, limits: DecodeLimits, lease: BodyLease
) -> list[Any]:
    """JSON ``{"instances": [...]}``, or a raw body that is one text or bytes instance.

    The decoded size is estimated and taken from the budget before anything is decoded.
    """
    mime = _mime(content_type)
    if _is_json(mime):
        scan = scan_json(body, limits)
        await lease.take(scan.decoded_bytes)
        return _json_instances(body, limits, scan)
    if mime == "text/plain":
        await lease.take(len(body) if body.isascii() else 4 * len(body))
        try:
            return [body.decode(_charset(content_type))]
        except (UnicodeDecodeError, LookupError):
            raise APIError(400, "bad_text", "the text/plain body is not valid text") from None
    if mime == "application/octet-stream" or mime.startswith("image/"):
        return [body]
    raise APIError(
        415,
        "unsupported_media_type",
        f"cannot predict from {mime}; send application/json, text/plain, "
        "application/octet-stream or image/*",
    )


def _json_instances(body: bytes, limits: DecodeLimits, scan: Scan) -> list[Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit"):
            raise _too_deep(limits) from None
        raise APIError(400, "bad_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise _invalid('the body must be a JSON object with an "instances" list')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise _invalid('"instances" must be a list')
    if not instances:
        raise _invalid('"instances" is empty; send at least one input')
    if len(instances) > limits.max_instances:
        raise APIError(
            413,
            "too_many_instances",
            f"the body has {len(instances):,} instances, over the limit of "
            f"{limits.max_instances:,} per request (--max-instances); split it into "
            "several requests",
            {"limit": "max_instances", "instances": len(instances)},
        )
    # No "b64" object can hide in a body without the text b64 (or a \u escape), and nesting
    # cannot pass the limit with fewer containers than levels.
    if scan.containers > limits.max_depth or b"b64" in body or b"\\u" in body:
        try:
            decode_instances(instances, limits.max_depth, depth=2)
        except NestingError as exc:
            raise _too_deep(limits, str(exc)) from None
        except InstanceError as exc:
            raise _invalid(str(exc)) from None
    return instances


def _too_deep(limits: DecodeLimits, where: str = "") -> APIError:
    message = where or f"the body is nested deeper than {limits.max_depth} levels"
    return APIError(
        422,
        "too_deep",
        f"{message} (--max-json-depth); flatten the input",
        {"limit": "max_json_depth", "max_depth": limits.max_depth},
    )


def _worker_error(exc: WorkerError) -> APIError:
    if isinstance(exc, WorkerTimeout):
        return APIError(504, "timeout", f"{exc}; the worker was restarted")
    if isinstance(exc, WorkerMemoryLimit):
        return APIError(502, "worker_memory_limit", str(exc), exc.detail())
    if isinstance(exc, WorkerOutputTooLarge):
        return APIError(502, "worker_output_too_large", str(exc), exc.detail())
    if isinstance(exc, WorkerCrashed):
        return APIError(502, "worker_crashed", str(exc), exc.detail())
    if isinstance(exc, WorkerLoadError):
        return APIError(502, "load_error", f"the model failed to load: {exc}", exc.error)
    if isinstance(exc, WorkerInputError):
        return _invalid(str(exc))
    if isinstance(exc, WorkerBusy):
        return APIError(503, "overloaded", str(exc), headers=_RETRY)
    if isinstance(exc, WorkerRestarted):
        return APIError(503, "worker_restarted", f"{exc}; retry", headers=_RETRY)
    return APIError(502, "worker_error", str(exc))


async def predict_response(
    state: AppState,
    request: Request,
    model_id: str,
    version: int | None,
    principal: Principal | None = None,
) -> Response:
    """Run a prediction and build its answer."""
    content_type = request.headers.get("content-type", "application/json")
    bodies: PredictBodies = request.app.state.bodies
    answer = await predict_answer(
        state,
        bodies,
        model_id,
        version,
        content_type,
        lambda lease: read_request(request, lease),
        principal,
        request.headers.get(KEY_HEADER),
    )
    return OrjsonResponse(answer, headers={VERSION_HEADER: str(answer["version"])})


def resolve_for_query(
    state: AppState, model_id: str, version: int | None, key: str | None
) -> tuple[VersionRecord, bool]:
    """The version that answers, and whether the model's traffic policy chose it."""
    traffic = state.traffic
    routed = version is None and model_id in traffic.routed
    if routed:
        version = traffic.route(model_id, key)
    try:
        return state.store.resolve_version(model_id, version), routed
    except NotFoundError:
        if not routed:
            raise
        return state.store.resolve_version(model_id, None), routed  # a split's version was deleted


def count_query(
    state: AppState, stats: ModelStats, model_id: str, outcome: str, elapsed: float
) -> None:
    stats.requests += 1
    stats.last_latency_ms = round(elapsed * 1000, 3)
    if outcome != "ok":
        stats.errors += 1
    state.metrics.predictions.labels(model_id, outcome).inc()
    state.metrics.predict_latency.labels(model_id).observe(elapsed)


async def predict_answer(
    state: AppState,
    bodies: PredictBodies,
    model_id: str,
    version: int | None,
    content_type: str,
    read_body: Callable[[BodyLease], Awaitable[bytes]],
    principal: Principal | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """The answer's JSON object, or an APIError; shared by the routes and ``fastpath``.

    The version is resolved before the body is read, so a query for an unknown model is
    refused without receiving its body. The body's memory, raw and decoded, is held against
    the server's budget until the answer is built.
    """
    started = time.perf_counter()
    traffic = state.traffic
    record, routed = resolve_for_query(state, model_id, version, key)
    stats = state.stats_for(model_id)
    outcome = "ok"
    status, body = 499, b""
    answer: Any = None
    try:
        with bodies.lease() as lease:
            body = await read_body(lease)
            instances = await decode_body(content_type, body, bodies.limits, lease)
            try:
                results = await state.pool.predict(
                    (model_id, record.version),
                    lambda: state.spec(model_id, record.version, record.manifest),
                    instances,
                )
            except WorkerError as exc:
                raise _worker_error(exc) from None
            count = len(instances)
            del instances
        if len(results) != count:
            raise APIError(502, "worker_error", "the worker answered the wrong number of results")
        predictions = []
        for index, (ok, value) in enumerate(results):
            if not ok:
                detail = dict(value.get("detail") or {})
                detail["index"] = index
                raise APIError(422, str(value.get("code", "model_error")), value["message"], detail)
            predictions.append(value)
        status, answer = 200, predictions
    except APIError as exc:
        outcome = exc.code
        status, answer = exc.status, {"error": {"code": exc.code, "message": exc.message}}
        exc.headers = {**(exc.headers or {}), VERSION_HEADER: str(record.version)}
        raise
    finally:
        elapsed = time.perf_counter() - started
        count_query(state, stats, model_id, outcome, elapsed)
        traffic.finish(
            model_id, record.version, routed, elapsed, status, outcome, content_type, body,
            answer, principal, bodies,
        )  # fmt: skip
    return {
        "predictions": predictions,
        "model_id": model_id,
        "version": record.version,
        "latency_ms": round(elapsed * 1000, 3),
    }


@router.post(
    "/v1/models/{model_id}/predict",
    response_model=PredictOut,
    responses=_ERRORS,
    openapi_extra=_BODY,
    summary="Predict with a model (its query token or the admin key)",
)
async def predict(
    request: Request,
    principal: Annotated[Principal, Depends(require_caller)],
    model_id: str = Path(max_length=200),
    version: int | None = Query(
        None, ge=1, le=MAX_VERSION, description="A version number; default if absent"
    ),
    stream: str | None = Query(
        None,
        description="true: answer with server-sent events, one per chunk of the model's "
        "predict_stream (as Accept: text/event-stream does; application/x-ndjson for JSON lines)",
    ),
) -> Response:
    state = get_state(request)
    if not principal.may_query(model_id):
        raise APIError(403, "wrong_model", "this query token belongs to another model")
    from easytensor_jupyter.inference.api import streaming

    kind = streaming.stream_kind(request, stream)
    if kind is not None:
        return await streaming.stream_response(state, request, model_id, version, kind)
    return await predict_response(state, request, model_id, version, principal)


@router.post(
    "/query/",
    response_model=PredictOut,
    responses=_ERRORS,
    openapi_extra=_BODY,
    summary="The original EasyTensor query route: the accessToken header picks the model",
)
async def query(
    request: Request, principal: Annotated[Principal, Depends(require_caller)]
) -> Response:
    state = get_state(request)
    if principal.model_id is None:
        raise APIError(
            403,
            "query_token_required",
            "/query/ needs a model's query token; with the admin key use /v1/models/{id}/predict",
        )
    return await predict_response(state, request, principal.model_id, None, principal)
