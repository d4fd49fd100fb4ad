"""Admin routes for a model's request log: read it a page at a time, and choose what it keeps."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from easytensor_jupyter.inference.api.errors import APIError, error_responses, json_response
from easytensor_jupyter.inference.api.schemas import MAX_VERSION
from easytensor_jupyter.inference.request_log import parse_mode
from easytensor_jupyter.inference.state import AppState, get_state, require_admin
from easytensor_jupyter.inference.store.request_log import LogRow, LogSettings

__all__ = ["LogSettingsIn", "log_view", "record_view", "router"]

router = APIRouter(tags=["request log"], dependencies=[Depends(require_admin)])

ModelId = Path(max_length=200, description="The model id")


class LogSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str | None = Field(
        None, max_length=40, description="off, errors, sample:P or all; null: the server default"
    )
    keep: int | None = Field(None, ge=1, le=10_000_000, description="records kept at most")
    keep_mb: float | None = Field(None, gt=0, le=1 << 20, description="MiB kept at most")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def _when(value: str | None, name: str) -> float | None:
    """Epoch seconds, or an ISO 8601 time (``2026-12-01T12:00:00Z``)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise APIError(
            400,
            "bad_time",
            f"{name}={value!r} is not a time: give epoch seconds or ISO 8601, "
            "e.g. 2026-12-01T12:00:00Z",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def record_view(row: LogRow) -> dict[str, Any]:
    if row.input is not None:
        instances: Any = orjson.loads(row.input)
        if isinstance(instances, dict):
            instances = instances.get("instances")
    elif row.input_blob is not None:
        instances = [{"b64": base64.b64encode(row.input_blob).decode("ascii")}]
    else:
        instances = None
    return {
        "id": row.id,
        "time": _iso(row.ts),
        "version": row.version,
        "kind": row.kind,
        "status": row.status,
        "code": row.code,
        "latency_ms": row.latency_ms,
        "token": row.token_label,
        "input": instances,
        "input_note": row.input_note,
        "output": orjson.loads(row.output) if row.output is not None else None,
        "agrees": row.agrees,
    }


def log_view(state: AppState, model_id: str) -> dict[str, Any]:
    own = state.traffic.of(model_id)
    limits = state.traffic.log.limits
    count, size = state.store.requests.totals(model_id)
    return {
        "model_id": model_id,
        "mode": state.traffic.log.mode_of(model_id),
        "own_mode": own.mode,
        "server_default": state.traffic.log.mode_of(""),
        "keep": own.keep if own.keep is not None else limits.keep,
        "keep_bytes": own.keep_bytes if own.keep_bytes is not None else limits.keep_bytes,
        "redact": limits.redact,
        "records": count,
        "bytes": size,
        "dropped": state.traffic.log.dropped,
    }


@router.get(
    "/v1/models/{model_id}/requests",
    responses=error_responses(400, 401, 403, 404),
    summary="A page of the model's logged requests, newest first",
)
async def list_requests(
    request: Request,
    model_id: str = ModelId,
    version: int | None = Query(None, ge=1, le=MAX_VERSION),
    status: str | None = Query(
        None, max_length=60, description="ok, error, an HTTP status or an error code"
    ),
    kind: str = Query("live", pattern="^(live|shadow|all)$"),
    since: str | None = Query(None, description="epoch seconds or ISO 8601"),
    until: str | None = Query(None, description="epoch seconds or ISO 8601"),
    before: int | None = Query(None, description="the `next` of the previous page"),
    limit: int = Query(50, ge=1, le=1000),
) -> Response:
    state = get_state(request)
    state.store.get_model(model_id)
    await state.traffic.log.flush()
    rows = await asyncio.to_thread(
        state.store.requests.query,
        model_id,
        version=version,
        status=status,
        kind=None if kind == "all" else kind,
        since=_when(since, "since"),
        until=_when(until, "until"),
        before=before,
        limit=limit,
    )
    nxt = rows[-1].id if len(rows) == limit else None
    return json_response({"records": [record_view(r) for r in rows], "next": nxt})


@router.get(
    "/v1/models/{model_id}/request-log",
    responses=error_responses(401, 403, 404),
    summary="The model's request log setting, retention and size",
)
async def get_log_settings(request: Request, model_id: str = ModelId) -> Response:
    state = get_state(request)
    state.store.get_model(model_id)
    return json_response(log_view(state, model_id))


@router.put(
    "/v1/models/{model_id}/request-log",
    responses=error_responses(400, 401, 403, 404, 422),
    summary="Set what the model's request log keeps (off, errors, sample:P, all) and how much",
)
async def set_log_settings(
    request: Request, body: LogSettingsIn, model_id: str = ModelId
) -> Response:
    state = get_state(request)
    if body.mode is not None:
        try:
            parse_mode(body.mode)
        except ValueError as exc:
            raise APIError(422, "bad_log_mode", str(exc)) from None
    current = state.traffic.of(model_id)
    updated = LogSettings(
        mode=(body.mode.strip().lower() if body.mode else None)
        if "mode" in body.model_fields_set
        else current.mode,
        keep=body.keep if body.keep is not None else current.keep,
        keep_bytes=int(body.keep_mb * (1 << 20)) if body.keep_mb else current.keep_bytes,
        traffic=current.traffic,
    )
    await asyncio.to_thread(state.traffic.save, model_id, updated)
    return json_response(log_view(state, model_id))
