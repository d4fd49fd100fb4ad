"""Replay inputs against two versions of a model, on the server, and say where they differ.

Inputs are the caller's, or by default the model's recently logged ones. Each input runs on
both versions in turn (a, then b, so neither is always measured on a warmer machine), straight
through the serving backend: a replay takes no traffic share, is not logged, and never moves
the default. A version deployed as a candidate can be compared before it takes any traffic.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from easytensor_jupyter.inference.api.errors import APIError, error_responses, json_response
from easytensor_jupyter.inference.api.predict import _worker_error
from easytensor_jupyter.inference.api.request_logs import record_view
from easytensor_jupyter.inference.api.schemas import MAX_VERSION
from easytensor_jupyter.inference.backends.errors import WorkerError
from easytensor_jupyter.inference.state import AppState, get_state, require_admin
from easytensor_jupyter.inference.traffic import same_answer
from easytensor_jupyter.instances import InstanceError, NestingError, decode_instances

__all__ = ["CompareIn", "router"]

router = APIRouter(tags=["traffic"], dependencies=[Depends(require_admin)])

ModelId = Path(max_length=200, description="The model id")
_MAX_CASES = 1000


class CompareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: int = Field(ge=1, le=MAX_VERSION, description="one version")
    b: int = Field(ge=1, le=MAX_VERSION, description="the other version")
    inputs: list[Any] | None = Field(
        None, description='instances to run (bytes as {"b64": ...}); default: logged inputs'
    )
    limit: int = Field(50, ge=1, le=_MAX_CASES, description="logged inputs to replay at most")


def _summary(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"median": None, "mean": None, "p90": None}
    ordered = sorted(latencies)
    return {
        "median": round(statistics.median(ordered), 3),
        "mean": round(statistics.fmean(ordered), 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
    }


async def _logged_inputs(state: AppState, model_id: str, limit: int) -> list[Any]:
    await state.traffic.log.flush()
    cases: list[Any] = []
    before = None
    while len(cases) < limit:
        rows = await asyncio.to_thread(
            state.store.requests.query, model_id, kind="live", before=before, limit=200
        )
        if not rows:
            break
        for row in rows:
            instances = record_view(row)["input"]
            if row.status < 400 and instances:
                cases.extend(instances[: limit - len(cases)])
        before = rows[-1].id
    return cases


async def _run(state: AppState, model_id: str, version: int, instance: Any) -> tuple[Any, float]:
    record = state.store.resolve_version(model_id, version)
    started = time.perf_counter()
    try:
        results = await state.pool.predict(
            (model_id, version),
            lambda: state.spec(model_id, version, record.manifest),
            [instance],
        )
    except WorkerError as exc:
        error = _worker_error(exc)
        return {"error": {"code": error.code, "message": error.message}}, 0.0
    elapsed = (time.perf_counter() - started) * 1000
    ok, value = results[0]
    return (value if ok else {"error": value}), elapsed


@router.post(
    "/v1/models/{model_id}/compare",
    responses=error_responses(400, 401, 403, 404, 422),
    summary="Run inputs (default: the logged ones) on two versions; agreement, differing "
    "cases and latency per version",
)
async def compare(request: Request, body: CompareIn, model_id: str = ModelId) -> Response:
    state = get_state(request)
    for version in (body.a, body.b):
        await asyncio.to_thread(state.store.resolve_version, model_id, version)
    source = "given" if body.inputs is not None else "logged"
    shown = (
        body.inputs
        if body.inputs is not None
        else await _logged_inputs(state, model_id, body.limit)
    )
    if len(shown) > _MAX_CASES:
        raise APIError(413, "too_many_inputs", f"compare takes {_MAX_CASES} inputs at most")
    if not shown:
        raise APIError(
            422,
            "no_inputs",
            f"{model_id} has no logged inputs to replay: send some traffic with the request "
            "log on (easytensor models log MODEL all), or pass inputs=[...]",
        )
    decoded = orjson.loads(orjson.dumps(shown))
    try:
        decode_instances(decoded, state.settings.max_json_depth)
    except (InstanceError, NestingError) as exc:
        raise APIError(422, "invalid_instances", str(exc)) from None
    latencies: dict[str, list[float]] = {"a": [], "b": []}
    differing, errors, agree = [], 0, 0
    for index, instance in enumerate(decoded):
        out_a, ms_a = await _run(state, model_id, body.a, instance)
        out_b, ms_b = await _run(state, model_id, body.b, instance)
        failed = [isinstance(o, dict) and set(o) == {"error"} for o in (out_a, out_b)]
        for name, ms, bad in (("a", ms_a, failed[0]), ("b", ms_b, failed[1])):
            if not bad:
                latencies[name].append(ms)
        errors += any(failed)
        if not any(failed) and same_answer(out_a, out_b):
            agree += 1
        else:
            differing.append({"index": index, "input": shown[index], "a": out_a, "b": out_b})
    return json_response(
        {
            "model_id": model_id,
            "a": body.a,
            "b": body.b,
            "source": source,
            "cases": len(decoded),
            "agree": agree,
            "errors": errors,
            "agreement": round(agree / len(decoded), 4),
            "differing": differing,
            "latency_ms": {"a": _summary(latencies["a"]), "b": _summary(latencies["b"])},
        }
    )
