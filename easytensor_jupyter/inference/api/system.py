"""Unauthenticated routes: liveness for clients waiting on start-up, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from easytensor_jupyter._version import __version__
from easytensor_jupyter.inference.api.errors import json_response
from easytensor_jupyter.inference.api.schemas import HealthOut
from easytensor_jupyter.inference.metrics import CONTENT_TYPE
from easytensor_jupyter.inference.state import get_state

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/health", response_model=HealthOut, summary="Liveness and a few counts")
async def health(request: Request) -> Response:
    state = get_state(request)
    body = HealthOut(
        status="ok",
        version=__version__,
        models=state.store.count_models(),
        workers=state.pool.count(),
    )
    return json_response(body)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    return Response(get_state(request).metrics.render(), media_type=CONTENT_TYPE)
