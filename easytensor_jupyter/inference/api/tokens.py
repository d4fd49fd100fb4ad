"""Admin routes for a model's query tokens; a token's secret is shown once, at creation."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from easytensor_jupyter.inference.api.auth import hash_token, new_query_token
from easytensor_jupyter.inference.api.errors import error_responses, json_response
from easytensor_jupyter.inference.api.schemas import TokenCreated, TokenList, TokenOut
from easytensor_jupyter.inference.state import get_state, require_admin

__all__ = ["router"]

router = APIRouter(tags=["tokens"], dependencies=[Depends(require_admin)])

ModelId = Path(max_length=200)


@router.post(
    "/v1/models/{model_id}/tokens",
    status_code=201,
    response_model=TokenCreated,
    responses=error_responses(401, 403, 404),
    summary="Create a query token for a model (the secret is shown only in this answer)",
)
async def create_token(request: Request, model_id: str = ModelId) -> Response:
    state = get_state(request)
    token = new_query_token()
    record = await asyncio.to_thread(state.store.add_token, model_id, hash_token(token))
    return json_response(TokenCreated(id=record.id, token=token), 201)


@router.get(
    "/v1/models/{model_id}/tokens",
    response_model=TokenList,
    responses=error_responses(401, 403, 404),
    summary="List a model's query tokens (no secrets)",
)
async def list_tokens(request: Request, model_id: str = ModelId) -> Response:
    state = get_state(request)
    recent = state.auth.last_used
    tokens = [
        TokenOut(
            id=t.id,
            created_at=t.created_at,
            revoked=t.revoked,
            last_used_at=recent.get(t.id, t.last_used_at),
        )
        for t in state.store.list_tokens(model_id)
    ]
    return json_response(TokenList(tokens=tokens))


@router.delete(
    "/v1/models/{model_id}/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404),
    summary="Revoke a query token; it stops working at once",
)
async def revoke_token(
    request: Request, model_id: str = ModelId, token_id: str = Path(max_length=100)
) -> Response:
    state = get_state(request)
    await asyncio.to_thread(state.store.revoke_token, model_id, token_id)
    return Response(status_code=204)
