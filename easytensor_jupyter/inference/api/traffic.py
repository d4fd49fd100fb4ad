"""Admin routes for a model's traffic policy: a canary split, a shadow, promote and roll back.

Promote makes a version the default and clears the split and shadow in one call, remembering
the default it replaced; roll back clears an active split or shadow, or, with none active,
returns the default to the version a promote replaced.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from easytensor_jupyter.inference.api.errors import APIError, error_responses, json_response
from easytensor_jupyter.inference.api.schemas import MAX_VERSION, DefaultVersionIn
from easytensor_jupyter.inference.state import AppState, get_state, require_admin
from easytensor_jupyter.inference.traffic import KEY_HEADER, VERSION_HEADER

__all__ = ["TrafficIn", "router", "traffic_view"]

router = APIRouter(tags=["traffic"], dependencies=[Depends(require_admin)])

ModelId = Path(max_length=200, description="The model id")


class TrafficIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split: dict[str, float] | None = Field(
        None, description='weights per version, e.g. {"2": 90, "3": 10}; null or {} for none'
    )
    sticky: bool = Field(False, description=f"route by a hash of the {KEY_HEADER} header")
    shadow: int | None = Field(None, ge=1, le=MAX_VERSION, description="a shadow version")


def traffic_view(state: AppState, model_id: str) -> dict[str, Any]:
    record = state.store.get_model(model_id)
    traffic = state.traffic.of(model_id).traffic or {}
    shadow = traffic.get("shadow")
    stats = None
    if shadow is not None:
        compared, agreed, errors = state.store.requests.shadow_summary(model_id, int(shadow))
        answered = compared - errors
        stats = {
            "compared": compared,
            "agreed": agreed,
            "errors": errors,
            "agreement": round(agreed / answered, 4) if answered else None,
            "dropped": state.traffic.shadow_dropped.get(model_id, 0),
        }
    return {
        "model_id": model_id,
        "default_version": record.default_version,
        "split": traffic.get("split") or None,
        "sticky": bool(traffic.get("sticky")),
        "shadow": shadow,
        "shadow_stats": stats,
        "previous_default": traffic.get("previous_default"),
        "key_header": KEY_HEADER,
        "version_header": VERSION_HEADER,
    }


def _check_version(versions: set[int], version: int, what: str) -> None:
    if version not in versions:
        known = ", ".join(str(v) for v in sorted(versions))
        raise APIError(
            422,
            "bad_traffic",
            f"{what} names version {version}, which this model does not have "
            f"(its versions: {known}); deploy it first, e.g. as a candidate",
        )


def _split_of(raw: dict[str, float], versions: set[int]) -> dict[str, float]:
    split: dict[str, float] = {}
    for key, weight in raw.items():
        if not key.strip().isdigit():
            raise APIError(
                422, "bad_traffic", f"split key {key!r} is not a version number; e.g. 2=90,3=10"
            )
        if weight < 0:
            raise APIError(422, "bad_traffic", f"the weight of version {key} is negative")
        _check_version(versions, int(key), "the split")
        split[str(int(key))] = weight
    if split and sum(split.values()) <= 0:
        raise APIError(422, "bad_traffic", "the split's weights add up to 0; give one a weight")
    return split


async def _save(state: AppState, model_id: str, traffic: dict[str, Any]) -> None:
    current = state.traffic.of(model_id)
    kept = {k: v for k, v in traffic.items() if v not in (None, {}, False)}
    await asyncio.to_thread(state.traffic.save, model_id, replace(current, traffic=kept or None))


@router.get(
    "/v1/models/{model_id}/traffic",
    responses=error_responses(401, 403, 404),
    summary="The model's traffic policy and its shadow's agreement",
)
async def get_traffic(request: Request, model_id: str = ModelId) -> Response:
    return json_response(traffic_view(get_state(request), model_id))


@router.put(
    "/v1/models/{model_id}/traffic",
    responses=error_responses(400, 401, 403, 404, 422),
    summary="Set a canary split and/or a shadow version (requests with ?version= bypass it)",
)
async def set_traffic(request: Request, body: TrafficIn, model_id: str = ModelId) -> Response:
    state = get_state(request)
    record = state.store.get_model(model_id)
    versions = {v.version for v in record.versions}
    split = _split_of(body.split or {}, versions)
    if body.shadow is not None:
        _check_version(versions, body.shadow, "--shadow")
    if body.sticky and not split:
        raise APIError(422, "bad_traffic", "sticky routing needs a split (--split 2=90,3=10)")
    previous = (state.traffic.of(model_id).traffic or {}).get("previous_default")
    traffic = {"split": split, "sticky": body.sticky, "shadow": body.shadow}
    await _save(state, model_id, {**traffic, "previous_default": previous})
    return json_response(traffic_view(state, model_id))


@router.post(
    "/v1/models/{model_id}/traffic/promote",
    responses=error_responses(400, 401, 403, 404, 422),
    summary="Make a version the default and clear the split and shadow, in one call",
)
async def promote(request: Request, body: DefaultVersionIn, model_id: str = ModelId) -> Response:
    state = get_state(request)
    record = state.store.get_model(model_id)
    _check_version({v.version for v in record.versions}, body.version, "promote")
    await asyncio.to_thread(state.store.set_default, model_id, body.version)
    previous = record.default_version if record.default_version != body.version else None
    await _save(state, model_id, {"previous_default": previous})
    return json_response(traffic_view(state, model_id))


@router.post(
    "/v1/models/{model_id}/traffic/rollback",
    responses=error_responses(401, 403, 404, 409),
    summary="Send all traffic back to the default (clear split and shadow), or undo a promote",
)
async def rollback(request: Request, model_id: str = ModelId) -> Response:
    state = get_state(request)
    record = state.store.get_model(model_id)
    traffic = state.traffic.of(model_id).traffic or {}
    previous = traffic.get("previous_default")
    versions = {v.version for v in record.versions}
    if traffic.get("split") or traffic.get("shadow") is not None:
        await _save(state, model_id, {"previous_default": previous})
    elif previous is not None and int(previous) in versions:
        await asyncio.to_thread(state.store.set_default, model_id, int(previous))
        await _save(state, model_id, {})
    else:
        raise APIError(
            409,
            "nothing_to_roll_back",
            f"{model_id} has no split, no shadow and no promote to undo; it serves version "
            f"{record.default_version}. Choose a default with easytensor models default",
        )
    return json_response(traffic_view(state, model_id))
